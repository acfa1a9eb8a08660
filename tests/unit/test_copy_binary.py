"""Pure tests of the binary COPY encoder (no database).

Besides hand-checked byte strings, most tests compare against ``_reference_encode``, a
deliberately naive per-row encoder written independently from the vectorised module, so a
bug would have to be made twice, in two different styles, to go unnoticed. Every test runs
twice: rows assembled by the compiled interleave, and by the pure-Python fallback.
"""

from __future__ import annotations

import datetime as dt
import struct
import time
import uuid
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

import conduitd.destinations.postgres.copy_binary as copy_binary
from conduitd.destinations.postgres.copy_binary import (
    PG_BINARY_TYPES,
    UnsupportedType,
    encode_copy_binary,
)
from conduitd.destinations.postgres.copy_binary_types import numeric_field

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH = dt.datetime(2000, 1, 1)
UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}



@pytest.fixture(autouse=True, params=["compiled", "python"])
def assembly(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which assembly of the rows the test runs with; the compiled one must have been built."""
    if request.param == "compiled":
        assert copy_binary._interleave is not None, "the compiled interleave was not built"
    else:
        monkeypatch.setattr(copy_binary, "_interleave", None)
    return str(request.param)


# ----------------------------------------------------------------- reference encoder
def _ref_numeric(value: Decimal, scale: int) -> bytes:
    """numeric_send-style encoding computed from the decimal string (independent path)."""
    with localcontext(prec=100):  # the default 28 digits would round decimal128(38) values
        text = f"{abs(value):.{max(scale, 0)}f}"
    int_part, _, frac_part = text.partition(".")
    int_part = int_part.lstrip("0")
    int_part = "0" * (-len(int_part) % 4) + int_part
    frac_part = frac_part + "0" * (-len(frac_part) % 4)
    int_groups = [int(int_part[i : i + 4]) for i in range(0, len(int_part), 4)]
    frac_groups = [int(frac_part[i : i + 4]) for i in range(0, len(frac_part), 4)]
    groups = int_groups + frac_groups
    weight = len(int_groups) - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    dscale = max(scale, 0)
    if not groups:
        return struct.pack(">hhHH", 0, 0, 0, dscale)
    sign = 0x4000 if value < 0 else 0
    return struct.pack(f">hhHH{len(groups)}h", len(groups), weight, sign, dscale, *groups)


def _ref_value(pg_type: str, arrow_type: Any, value: Any) -> bytes:
    """Binary encoding of one non-null Python value (as from ``to_pylist``)."""
    simple = {"int2": ">h", "int4": ">i", "int8": ">q", "float4": ">f", "float8": ">d"}
    if pg_type in simple:
        return struct.pack(simple[pg_type], value)
    if pg_type == "bool":
        return b"\x01" if value else b"\x00"
    if pg_type in ("text", "varchar", "bpchar", "name", "json"):
        return bytes(value.encode())
    if pg_type == "jsonb":
        return b"\x01" + bytes(value.encode())
    if pg_type == "bytea":
        return bytes(value)
    if pg_type == "uuid":
        return bytes(value) if isinstance(value, bytes) else uuid.UUID(value).bytes
    if pg_type == "date":
        return struct.pack(">i", (value - dt.date(2000, 1, 1)).days)
    if pg_type in ("timestamp", "timestamptz"):
        return struct.pack(">q", value)  # already microseconds since 2000 (see below)
    if pg_type == "numeric":
        return _ref_numeric(value, arrow_type.scale)
    raise AssertionError(pg_type)


def _reference_encode(table: pa.Table, pg_types: list[str]) -> bytes:
    """Row-by-row encoder used as an oracle for the vectorised one."""
    columns: list[list[Any]] = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            per_second = UNIT_PER_SECOND[column.type.unit]
            raw = column.cast(pa.int64()).to_pylist()
            epoch = 946_684_800 * per_second
            columns.append([None if v is None else (v - epoch) * 10**6 // per_second for v in raw])
        else:
            columns.append(column.to_pylist())
    out = [HEADER]
    for row in range(table.num_rows):
        out.append(struct.pack(">h", table.num_columns))
        for column, values, pg_type in zip(table.columns, columns, pg_types, strict=True):
            if values[row] is None:
                out.append(b"\xff\xff\xff\xff")
            else:
                data = _ref_value(pg_type, column.type, values[row])
                out.append(struct.pack(">i", len(data)) + data)
    out.append(TRAILER)
    return b"".join(out)


def _decimal_array(unscaled: list[int], precision: int, scale: int, mask: Any = None) -> pa.Array:
    """decimal128 array from unscaled integers (no float, no rounding)."""
    with localcontext(prec=100):
        values = [Decimal(u).scaleb(-scale) for u in unscaled]
    return pa.array(values, pa.decimal128(precision, scale), mask=mask)


def _uuid_text(value: int) -> str:
    """Canonical uuid text, upper case for odd values (the encoder must accept both)."""
    text = str(uuid.UUID(int=value))
    return text.upper() if value % 2 else text


def _mixed_table(n: int, seed: int = 1, null_every: int = 5) -> tuple[pa.Table, list[str]]:
    """Random table with one column of every supported type and scattered nulls."""
    rng = np.random.default_rng(seed)

    def nulls(k: int) -> npt.NDArray[np.bool_]:
        return np.asarray((np.arange(n) + k) % null_every == null_every - 1, dtype=np.bool_)

    def arr(values: Any, typ: Any, k: int) -> pa.Array:
        return pa.array(values, typ, mask=nulls(k))

    words = ["", "a", "héllo", "日本語テキスト", "x" * 40, "emoji 🎉", "tab\tnew\nline"]
    text = [words[i % len(words)] + str(i) * int(i % 3) for i in range(n)]
    unscaled = [int(v) for v in rng.integers(-(10**12) + 1, 10**12, n)]
    highs, lows = rng.integers(-(10**9), 10**9, n), rng.integers(0, 10**12, n)
    big = [int(v) * 10**20 + int(w) for v, w in zip(highs, lows, strict=True)]
    cols: dict[str, pa.Array] = {
        "i2": arr(rng.integers(-(2**15), 2**15, n).astype(np.int16), pa.int16(), 0),
        "i4": arr(rng.integers(-(2**31), 2**31, n).astype(np.int32), pa.int32(), 1),
        "i8": arr(rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64), pa.int64(), 2),
        "f4": arr(rng.standard_normal(n).astype(np.float32), pa.float32(), 3),
        "f8": arr(rng.standard_normal(n) * 1e10, pa.float64(), 4),
        "b": arr(rng.integers(0, 2, n).astype(bool), pa.bool_(), 0),
        "t": arr(text, pa.string(), 1),
        "lt": arr(text, pa.large_string(), 2),
        "c": arr([s[:3] for s in text], pa.string(), 3),
        "nm": arr(text, pa.string(), 4),
        "j": arr([f'{{"k": {i}}}' for i in range(n)], pa.string(), 0),
        "jb": arr([f'{{"k": [{i}, "{w}"]}}' for i, w in enumerate(text)], pa.large_string(), 1),
        "u": arr([_uuid_text(int(v)) for v in rng.integers(0, 2**63, n)], pa.string(), 2),
        "uf": arr([uuid.UUID(int=int(v)).bytes for v in rng.integers(0, 2**63, n)], pa.binary(16), 3),
        "by": arr([bytes(rng.integers(0, 256, i % 9).astype(np.uint8)) for i in range(n)], pa.binary(), 4),
        "lby": arr([b"\x00" * (i % 4) for i in range(n)], pa.large_binary(), 0),
        "d": arr(rng.integers(-20000, 40000, n).astype(np.int32), pa.int32(), 1).cast(pa.date32()),
        "ts_s": arr(rng.integers(-(10**10), 10**10, n), pa.int64(), 2).cast(pa.timestamp("s")),
        "ts_ms": arr(rng.integers(-(10**13), 10**13, n), pa.int64(), 3).cast(pa.timestamp("ms")),
        "tz_us": arr(rng.integers(-(10**16), 10**16, n), pa.int64(), 4).cast(pa.timestamp("us", "UTC")),
        "tz_ns": arr(rng.integers(-(10**18), 10**18, n), pa.int64(), 0).cast(pa.timestamp("ns", "Europe/Paris")),
        "n12": _decimal_array(unscaled, 12, 2, nulls(1)),
        "n18": _decimal_array([u * 1000 + 7 for u in unscaled], 18, 7, nulls(2)),
        "n5": _decimal_array([u % 100_000 for u in unscaled], 5, 5, nulls(3)),
        "n38": _decimal_array(big, 38, 10, nulls(4)),
    }
    types = {
        "i2": "int2", "i4": "int4", "i8": "int8", "f4": "float4", "f8": "float8", "b": "bool",
        "t": "text", "lt": "varchar", "c": "bpchar", "nm": "name", "j": "json", "jb": "jsonb",
        "u": "uuid", "uf": "uuid", "by": "bytea", "lby": "bytea", "d": "date",
        "ts_s": "timestamp", "ts_ms": "timestamp", "tz_us": "timestamptz", "tz_ns": "timestamptz",
        "n12": "numeric", "n18": "numeric", "n5": "numeric", "n38": "numeric",
    }  # fmt: skip
    return pa.table(cols), [types[name] for name in cols]


# ----------------------------------------------------------------------------- tests
def test_public_type_set() -> None:
    expected = {"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "bpchar", "name"}
    expected |= {"numeric", "timestamp", "timestamptz", "date", "json", "jsonb", "uuid", "bytea"}
    assert expected == PG_BINARY_TYPES


def test_header_and_trailer_of_empty_table() -> None:
    table = pa.table({"a": pa.array([], pa.int32())})
    assert encode_copy_binary(table, ["int4"]) == HEADER + TRAILER
    assert len(HEADER) == 19


def test_hand_checked_tiny_table() -> None:
    table = pa.table({"id": pa.array([1, 258], pa.int32()), "name": pa.array(["hé", None])})
    expected = (
        HEADER
        + b"\x00\x02"  # two fields
        + b"\x00\x00\x00\x04" + b"\x00\x00\x00\x01"  # int4 1
        + b"\x00\x00\x00\x03" + b"h\xc3\xa9"  # text 'hé' (3 utf-8 bytes)
        + b"\x00\x02"
        + b"\x00\x00\x00\x04" + b"\x00\x00\x01\x02"  # int4 258
        + b"\xff\xff\xff\xff"  # NULL: length -1, no data
        + TRAILER
    )  # fmt: skip
    assert encode_copy_binary(table, ["int4", "text"]) == expected


def _numeric_bytes(value: str, precision: int, scale: int) -> bytes:
    """The field data (without length prefix) the encoder emits for one decimal value."""
    table = pa.table({"n": pa.array([Decimal(value)], pa.decimal128(precision, scale))})
    body = encode_copy_binary(table, ["numeric"])[len(HEADER) + 2 : -len(TRAILER)]
    (length,) = struct.unpack(">i", body[:4])
    assert length == len(body) - 4
    return body[4:]


def _numeric(ndigits: int, weight: int, sign: int, dscale: int, *digits: int) -> bytes:
    return struct.pack(f">hhHH{len(digits)}h", ndigits, weight, sign, dscale, *digits)


@pytest.mark.parametrize("precision", [12, 18, 30])  # 30: the exact per-value fallback
@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [
        ("0", 0, _numeric(0, 0, 0, 0)),
        ("0", 2, _numeric(0, 0, 0, 2)),
        ("0", 5, _numeric(0, 0, 0, 5)),
        ("1", 0, _numeric(1, 0, 0, 0, 1)),
        ("1", 2, _numeric(1, 0, 0, 2, 1)),
        ("1", 9, _numeric(1, 0, 0, 9, 1)),
        ("-1", 0, _numeric(1, 0, 0x4000, 0, 1)),
        ("-1", 3, _numeric(1, 0, 0x4000, 3, 1)),
        ("12.34", 2, _numeric(2, 0, 0, 2, 12, 3400)),
        ("12.34", 4, _numeric(2, 0, 0, 4, 12, 3400)),
        ("12.34", 6, _numeric(2, 0, 0, 6, 12, 3400)),
        ("0.0001", 4, _numeric(1, -1, 0, 4, 1)),
        ("0.0001", 6, _numeric(1, -1, 0, 6, 1)),
        ("0.0001", 8, _numeric(1, -1, 0, 8, 1)),
        ("123456789.12", 2, _numeric(4, 2, 0, 2, 1, 2345, 6789, 1200)),
        ("123456789.12", 3, _numeric(4, 2, 0, 3, 1, 2345, 6789, 1200)),
        ("-0.5", 1, _numeric(1, -1, 0x4000, 1, 5000)),
        ("-0.5", 2, _numeric(1, -1, 0x4000, 2, 5000)),
        ("-0.5", 7, _numeric(1, -1, 0x4000, 7, 5000)),
        ("10000", 0, _numeric(1, 1, 0, 0, 1)),
        ("0.00000001", 8, _numeric(1, -2, 0, 8, 1)),
        ("-9999.9999", 4, _numeric(2, 0, 0x4000, 4, 9999, 9999)),
    ],
)
def test_numeric_digit_groups(value: str, scale: int, expected: bytes, precision: int) -> None:
    assert _numeric_bytes(value, precision, scale) == expected
    assert numeric_field(int(Decimal(value).scaleb(scale)), scale) == expected


def test_numeric_extremes_and_negative_scale() -> None:
    top18 = 10**18 - 1
    assert _numeric_bytes(str(top18), 18, 0) == _ref_numeric(Decimal(top18), 0)
    assert _numeric_bytes(f"-{top18}", 18, 0) == _ref_numeric(Decimal(-top18), 0)
    assert _numeric_bytes("-0.999999999999999999", 18, 18) == _ref_numeric(
        Decimal("-0.999999999999999999"), 18
    )
    top38 = Decimal("-" + "9" * 28 + "." + "9" * 10)
    assert _numeric_bytes(str(top38), 38, 10) == _ref_numeric(top38, 10)
    # Negative Arrow scale: unscaled 12 at scale -3 is 12000, dscale 0.
    neg = pa.table({"n": pa.array([Decimal("12E3")], pa.decimal128(5, -3))})
    assert encode_copy_binary(neg, ["numeric"])[25:-2] == _numeric(2, 1, 0, 0, 1, 2000)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamps_before_and_after_2000(unit: str) -> None:
    per_second = UNIT_PER_SECOND[unit]
    moments = [
        dt.datetime(2000, 1, 1),
        dt.datetime(2000, 1, 1, 0, 0, 1),
        dt.datetime(1999, 12, 31, 23, 59, 59),
        dt.datetime(1970, 1, 1),
        dt.datetime(1900, 3, 4, 5, 6, 7),
        dt.datetime(2038, 1, 19, 3, 14, 8),
    ]
    raw = [int((m - dt.datetime(1970, 1, 1)).total_seconds()) * per_second for m in moments]
    if unit in ("ms", "us", "ns"):  # sub-second parts, negative ones included
        raw += [-1, 1, -(per_second // 1000) - 1, 946_684_800 * per_second - 1]
    for tz in (None, "UTC", "Asia/Kolkata"):
        typ = pa.timestamp(unit, tz)
        table = pa.table({"t": pa.array(raw, pa.int64()).cast(typ)})
        encoded = encode_copy_binary(table, ["timestamp" if tz is None else "timestamptz"])
        fields = [encoded[19 + 14 * i + 6 : 19 + 14 * (i + 1)] for i in range(len(raw))]
        got = [struct.unpack(">q", f)[0] for f in fields]
        epoch = 946_684_800 * per_second
        assert got == [(v - epoch) * 1_000_000 // per_second for v in raw]
        assert got[: len(moments)] == [(m - PG_EPOCH) // dt.timedelta(microseconds=1) for m in moments]
    # Flooring, not truncating: 1 ns before 2000 is the microsecond before 2000.
    one_ns_before = pa.table({"t": pa.array([946_684_800 * 10**9 - 1], pa.timestamp("ns"))})
    assert encode_copy_binary(one_ns_before, ["timestamp"])[25:33] == struct.pack(">q", -1)


def test_dates() -> None:
    days = [dt.date(2000, 1, 1), dt.date(1999, 12, 31), dt.date(1970, 1, 1), dt.date(2024, 2, 29)]
    encoded = encode_copy_binary(pa.table({"d": pa.array(days, pa.date32())}), ["date"])
    got = [struct.unpack(">i", encoded[19 + 10 * i + 6 : 19 + 10 * (i + 1)])[0] for i in range(4)]
    assert got == [0, -1, -10957, 8825]


def test_jsonb_uuid_bool_bytea() -> None:
    u = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    table = pa.table(
        {
            "j": pa.array(['{"a":1}']),
            "u": pa.array([str(u).upper()]),
            "b": pa.array([True]),
            "y": pa.array([b"\x00\xff"], pa.binary()),
        }
    )
    got = encode_copy_binary(table, ["jsonb", "uuid", "bool", "bytea"])
    body = b"\x00\x04" + b"\x00\x00\x00\x08\x01" + b'{"a":1}'
    body += b"\x00\x00\x00\x10" + u.bytes + b"\x00\x00\x00\x01\x01" + b"\x00\x00\x00\x02\x00\xff"
    assert got == HEADER + body + TRAILER


def test_matches_reference_encoder_on_random_table_with_nulls() -> None:
    table, types = _mixed_table(3000)
    assert encode_copy_binary(table, types) == _reference_encode(table, types)


def test_no_null_table_fast_path_matches_reference() -> None:
    table, types = _mixed_table(500, seed=3, null_every=10**9)
    assert sum(col.null_count for col in table.columns) == 0
    assert encode_copy_binary(table, types) == _reference_encode(table, types)
    fixed = table.select(["i2", "i4", "i8", "f4", "f8", "b", "d", "uf", "tz_us", "n12"])
    fixed_types = [types[table.column_names.index(name)] for name in fixed.column_names]
    assert encode_copy_binary(fixed, fixed_types) == _reference_encode(fixed, fixed_types)


def test_sliced_and_chunked_tables_encode_like_fresh_copies() -> None:
    table, types = _mixed_table(2000, seed=7)
    for start, length in [(0, 1), (1, 5), (3, 997), (1234, 766), (1999, 1)]:
        sliced = table.slice(start, length)
        fresh = sliced.take(pa.array(range(length)))  # new buffers, offset 0
        assert all(chunk.offset == 0 for col in fresh.columns for chunk in col.chunks)
        assert encode_copy_binary(sliced, types) == encode_copy_binary(fresh, types)
        assert encode_copy_binary(sliced, types) == _reference_encode(fresh, types)
    chunked = pa.concat_tables([table.slice(0, 700), table.slice(700, 1), table.slice(701)])
    assert chunked.column(0).num_chunks == 3
    assert encode_copy_binary(chunked, types) == encode_copy_binary(table, types)


def test_windows_do_not_change_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import conduitd.destinations.postgres.copy_binary as module

    table, types = _mixed_table(1000, seed=11)
    expected = encode_copy_binary(table, types)
    monkeypatch.setattr(module, "_WINDOW_BYTES", 3000)  # many tiny windows
    assert encode_copy_binary(table, types) == expected


def test_null_slots_holding_bytes_are_skipped() -> None:
    """Arrow lets a null slot of a string array span bytes; those never reach the output (the
    runs are then gathered rather than used in place)."""
    offsets = pa.py_buffer(np.array([0, 3, 8, 10], dtype=np.int32).tobytes())
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    text = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, pa.py_buffer(b"abcJUNK!de")])
    assert text.to_pylist() == ["abc", None, "de"]
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "t": text})
    clean = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "t": pa.array(["abc", None, "de"])})
    assert encode_copy_binary(table, ["int8", "text"]) == _reference_encode(clean, ["int8", "text"])


def test_large_values() -> None:
    blobs = [bytes([i]) * (i * 997 % 5000) for i in range(40)] + [b"z" * 3_000_000]
    table = pa.table({"id": pa.array(range(41), pa.int64()), "blob": pa.array(blobs, pa.binary())})
    assert encode_copy_binary(table, ["int8", "bytea"]) == _reference_encode(table, ["int8", "bytea"])


def test_unsupported_types_are_rejected_up_front() -> None:
    table = pa.table({"a": pa.array([1], pa.int64())})
    with pytest.raises(UnsupportedType, match="not supported"):
        encode_copy_binary(table, ["interval"])
    with pytest.raises(UnsupportedType, match="cannot be encoded as int4"):
        encode_copy_binary(table, ["int4"])
    with pytest.raises(UnsupportedType):
        encode_copy_binary(pa.table({"t": pa.array([1], pa.timestamp("us"))}), ["timestamptz"])
    with pytest.raises(UnsupportedType):
        encode_copy_binary(pa.table({"t": pa.array([1], pa.timestamp("us", "UTC"))}), ["timestamp"])
    with pytest.raises(UnsupportedType):
        encode_copy_binary(pa.table({"u": pa.array([b"x" * 15], pa.binary(15))}), ["uuid"])
    with pytest.raises(ValueError, match="pg_types"):
        encode_copy_binary(table, ["int8", "int8"])
    assert issubclass(UnsupportedType, ValueError)


@pytest.mark.parametrize(
    "bad",
    [
        "1234567-89ab-cdef-0123-456789abcdef0",  # right length, dash misplaced
        "g2345678-9abc-def0-1234-56789abcdef0",  # not hex
        "12345678+9abc-def0-1234-56789abcdef0",  # not a dash
        "123456789abcdef0123456789abcdef0",  # 32 hex digits: not the canonical form
        "x",
    ],
)
def test_malformed_uuid_strings_raise(bad: str) -> None:
    table = pa.table({"u": pa.array(["12345678-9abc-def0-1234-56789abcdef0", None, bad])})
    with pytest.raises(ValueError, match="uuid"):
        encode_copy_binary(table, ["uuid"])


def test_bad_value_reports_the_absolute_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import conduitd.destinations.postgres.copy_binary as module

    monkeypatch.setattr(module, "_WINDOW_BYTES", 2000)  # the bad row is in a later window
    values: list[str | None] = [str(uuid.UUID(int=i)) for i in range(500)]
    values[377] = "not a uuid, but 36 characters long.."
    values[10] = None
    with pytest.raises(ValueError, match=r"column 'u', row 377: malformed uuid"):
        encode_copy_binary(pa.table({"u": pa.array(values)}), ["uuid"])


def test_decimals_outside_declared_precision_are_still_exact() -> None:
    """Unchecked casts can leave values wider than the declared precision (even beyond
    int64); the fast path must notice and fall back rather than drop digits."""
    unscaled = [10**7, -(2**64 + 5), 2**70, 123, -(2**63)]
    buffer = b"".join(u.to_bytes(16, "little", signed=True) for u in unscaled)
    array = pa.Array.from_buffers(pa.decimal128(5, 2), len(unscaled), [None, pa.py_buffer(buffer)])
    fields = [_ref_numeric(Decimal(u).scaleb(-2), 2) for u in unscaled]
    expected = b"".join(b"\x00\x01" + struct.pack(">i", len(f)) + f for f in fields)
    assert encode_copy_binary(pa.table({"n": array}), ["numeric"]) == HEADER + expected + TRAILER


def test_encode_rate_of_ten_column_table() -> None:
    n = 200_000
    rng = np.random.default_rng(0)
    unscaled = rng.integers(-(10**11), 10**11, n)
    decimals = pa.Array.from_buffers(
        pa.decimal128(12, 2), n, [None, pa.py_buffer(np.stack([unscaled, unscaled >> 63], 1).tobytes())]
    )
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "name": pa.array([f"customer-{i}" for i in range(n)]),
            "amount": decimals,
            "at": pa.array(rng.integers(0, 2 * 10**15, n), pa.timestamp("us", "UTC")),
            "flag": pa.array(rng.integers(0, 2, n).astype(bool)),
            "score": pa.array(rng.random(n)),
            "doc": pa.array([f'{{"i": {i}}}' for i in range(n)]),
            "uid": pa.array([str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**62, n)]),
            "day": pa.array(rng.integers(0, 20000, n).astype(np.int32)).cast(pa.date32()),
            "qty": pa.array(rng.integers(-1000, 1000, n).astype(np.int32)),
        }
    )
    types = ["int8", "text", "numeric", "timestamptz", "bool", "float8", "jsonb", "uuid", "date", "int4"]
    encode_copy_binary(table.slice(0, 1000), types)  # warm-up
    elapsed = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        encoded = encode_copy_binary(table, types)
        elapsed = min(elapsed, time.perf_counter() - start)
    print(f"\nencode_copy_binary: {n / elapsed:,.0f} rows/s ({len(encoded) / n:.0f} bytes/row)")
    assert elapsed < 2.0
    assert encoded[:19] == HEADER and encoded[-2:] == TRAILER
