"""Generated values that a type could alter: JSON integers beyond int64 keep scale 0, CSV columns
are typed only when every value reads back as written (negative zero included), and the SQLite
dialect gives uint64 and booleans text columns (its INTEGER is int64; it has no boolean)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.csvtypes import infer_types
from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position
from conduitd.core.schema import cast_column
from conduitd.destinations.sqlite import SqliteDialect


def at(offset: int) -> Position:
    return {"offset": offset}


BEYOND_DOUBLE = st.integers(2**53 + 1, 10**38 - 1) | st.integers(-(10**38) + 1, -(2**53) - 1)
"""Up to 38 digits: what a decimal128 (PostgreSQL numeric(38,0)) holds."""


@settings(max_examples=60)
@given(st.lists(BEYOND_DOUBLE | st.integers(-5, 5) | st.none(), min_size=1, max_size=6).filter(
    lambda v: any(x is not None and abs(x) > 2**53 for x in v)))
def test_json_integers_beyond_a_double_are_exact_and_without_a_fraction(values: list[int | None]) -> None:
    block = b"".join(b'{"u":' + orjson.dumps(v) + b"}\n" if v is None or abs(v) < 2**63
                     else b'{"u":' + str(v).encode() + b"}\n" for v in values)
    rows, rejects, _ = decode_jsonl_lines(block, "p", at)
    assert rows.num_rows + len(rejects) == len(values)
    if rejects:  # beyond what Arrow reads exactly: refused, never altered
        assert all(r.reason for r in rejects)
        return
    kind = rows.schema.field("u").type
    assert pa.types.is_int64(kind) or (pa.types.is_decimal(kind) and kind.scale == 0)
    assert rows.column("u").to_pylist() == [None if v is None else (Decimal(v) if pa.types.is_decimal(kind) else v)
                                            for v in values]
    assert [None if v is None else str(v) for v in cast_column(rows.column("u"), SqliteDialect().column_for(
        "u", kind))[0].to_pylist()] == [None if v is None else str(v) for v in values]


def test_a_lone_uint64_maximum_has_scale_zero() -> None:
    rows, rejects, _ = decode_jsonl_lines(b'{"u":18446744073709551615}\n', "p", at)
    assert not rejects and rows.schema.field("u").type.scale == 0
    assert rows.column("u").to_pylist() == [Decimal(2**64 - 1)]


NUMBERISH = st.sampled_from(["-0", "-0.0", "0", "0.0", "0.10", "1.5", "-1.5", "10", "-7", "1e3", "1e+22", "2.0",
                             "+3", "007", "true", "false", "True", "2026-01-31", "x", ""])


@settings(max_examples=100)
@given(st.lists(NUMBERISH | st.floats(allow_nan=False).map(repr) | st.integers().map(str), min_size=1, max_size=6))
def test_a_csv_column_is_typed_only_if_every_value_reads_back_as_written(cells: list[str]) -> None:
    """Read back from the Arrow type and from SQLite, which stores -0.0 as 0."""
    column = pa.array([c or None for c in cells], pa.string())
    typed = infer_types(pa.table({"c": column})).column("c")
    written = [c or None for c in cells]
    assert typed.cast(pa.string()).to_pylist() == written if not pa.types.is_null(typed.type) else \
        all(c is None for c in written)
    dialect_column = SqliteDialect().column_for("c", typed.type)
    values, failed = cast_column(typed, dialect_column)
    assert not failed.any()
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t (c {dialect_column.sql})")
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values.to_pylist()])
    back = [r[0] for r in db.execute("SELECT c FROM t ORDER BY rowid")]
    if pa.types.is_floating(typed.type):
        assert [None if v is None else pa.scalar(v).cast(pa.string()).as_py() for v in back] == written
    elif not pa.types.is_null(typed.type):
        assert [None if v is None else str(v) for v in back] == written


def test_negative_zero_keeps_a_csv_column_text() -> None:
    for cells in (["-0"], ["-0.0"], ["1.5", "-0"], ["0.10"]):
        assert pa.types.is_string(infer_types(pa.table({"c": cells})).schema.field("c").type), cells


@settings(max_examples=50)
@given(st.lists(st.integers(0, 2**64 - 1) | st.none(), min_size=1, max_size=8))
def test_sqlite_keeps_every_uint64_exactly(values: list[int | None]) -> None:
    column = SqliteDialect().column_for("u", pa.uint64())
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t (u {column.sql})")
    cast, failed = cast_column(pa.array(values, pa.uint64()), column)
    assert not failed.any()
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in cast.to_pylist()])
    assert [None if v is None else int(v) for (v,) in db.execute("SELECT u FROM t ORDER BY rowid")] == values


def test_sqlite_booleans_are_text_as_read() -> None:
    column = SqliteDialect().column_for("b", pa.bool_())
    assert column.sql == "TEXT"
    assert cast_column(pa.array([True, False, None]), column)[0].to_pylist() == ["true", "false", None]


def test_a_json_number_beyond_twenty_integer_digits_is_not_overflowed() -> None:
    """The reader let a 30-digit integer read as decimal(38,18) overflow silently into another
    number (-100000000000000000000.219...); now it is read at a precision that holds it."""
    rows, rejects, _ = decode_jsonl_lines(b'{"u":-589425871789917070920670811243}\n{"u":1.25}\n', "p", at)
    assert not rejects
    assert rows.column("u").to_pylist() == [Decimal("-589425871789917070920670811243"), Decimal("1.25")]
