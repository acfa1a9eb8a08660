"""Per-type column encoders for PostgreSQL binary COPY (helper of ``copy_binary``).

Every encoder turns one Arrow array into a list of *parts*.  A part describes, for every
row, one contiguous run of bytes of the final tuple (length prefix and/or field data).
``copy_binary`` interleaves the parts of all columns row by row (one Arrow join), so
encoders never loop over rows in Python; they only build numpy arrays.

Two kinds of parts exist because they are assembled differently:

* ``FixedPart``: side-by-side uint8 matrices ("pieces", ``(n, w)`` or a broadcast
  ``(1, w)`` constant such as a length prefix), row ``i`` contributing its first
  ``lengths[i]`` bytes (all of them when ``lengths`` is None).  Adjacent fixed parts
  without per-row lengths are merged and materialised once into one wider matrix, which
  is what makes tables of non-null fixed-width columns a plain reshape.
* ``VarPart``: bytes ``data[starts[i]:starts[i] + lengths[i]]``, e.g. an Arrow string data
  buffer used in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .copy_binary_uuid import NIL_UUID_TEXT, uuid_bytes, uuid_bytes_exactly

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

#: Microseconds / days between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
PG_EPOCH_US = 946_684_800_000_000
PG_EPOCH_DAYS = 10_957
_NUMERIC_NEG = 0x4000
_NULL_PREFIX = np.full(4, 0xFF, dtype=np.uint8)  # int32 -1: the field is NULL
_US_FACTOR = {"s": 1_000_000, "ms": 1_000, "us": 1}
_NUMERIC_HEADER = np.dtype(
    [("len", ">i4"), ("ndigits", ">i2"), ("weight", ">i2"), ("sign", ">i2"), ("dscale", ">i2")]
)


class UnsupportedType(ValueError):
    """A PG type name the encoder cannot produce, or an Arrow type that does not match it.

    A ValueError subclass so callers that already treat bad input as ValueError keep working.
    """


class BadValue(ValueError):
    """A value the Arrow type allows but PostgreSQL's type does not (e.g. a malformed uuid).

    ``row`` is relative to the array handed to the encoder; the caller adds its offset.
    """

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FixedPart:
    """Row ``i`` contributes ``row_i[:lengths[i]]`` (all of it when lengths is None), where
    ``row_i`` is the concatenation of row ``i`` of every piece (``(1, w)`` pieces repeat)."""

    pieces: tuple[U8, ...]
    lengths: I64 | None

    @property
    def width(self) -> int:
        """Bytes per row before the per-row ``lengths`` cut."""
        return sum(piece.shape[1] for piece in self.pieces)

    def materialize(self, n: int) -> U8:
        """The ``(n, width)`` C-contiguous matrix, written with one copy per piece."""
        if len(self.pieces) == 1 and self.pieces[0].shape[0] == n:
            return np.ascontiguousarray(self.pieces[0])
        out = np.empty((n, self.width), dtype=np.uint8)
        col = 0
        for piece in self.pieces:
            out[:, col : col + piece.shape[1]] = piece
            col += piece.shape[1]
        return out


@dataclass(frozen=True, slots=True)
class VarPart:
    """Row ``i`` contributes ``data[starts[i]:starts[i] + lengths[i]]``."""

    data: U8
    starts: I64
    lengths: I64


Part = FixedPart | VarPart
Encoder = Callable[[Any], list[Part]]


def _bits(buffer: Any, offset: int, n: int) -> U8:
    """Bits ``offset .. offset + n`` of an Arrow bitmap (LSB first) as 0/1 bytes.

    Only the bytes covering the slice are unpacked: windows are slices of one big array.
    """
    packed = np.frombuffer(buffer, dtype=np.uint8)[offset // 8 : (offset + n + 7) // 8]
    return np.unpackbits(packed, bitorder="little")[offset % 8 : offset % 8 + n]


def validity(arr: Any) -> Mask | None:
    """Per-row validity, or None when there are no nulls (the common, cheaper case)."""
    if arr.null_count == 0:
        return None
    return _bits(arr.buffers()[0], arr.offset, len(arr)).view(np.bool_)


def _values(arr: Any, dtype: str, width: int = 1) -> npt.NDArray[Any]:
    """Zero-copy view of the value buffer, honouring ``arr.offset`` (sliced arrays)."""
    n, off = len(arr), arr.offset
    raw = np.frombuffer(arr.buffers()[1], dtype=dtype, count=(off + n) * width)
    return raw[off * width :]


def _int32_be(value: int) -> U8:
    """A ``(1, 4)`` broadcastable big-endian int32 (constant length prefixes)."""
    return np.array([value], dtype=">i4").view(np.uint8).reshape(1, 4)


def fixed_field(payload: U8, valid: Mask | None) -> FixedPart:
    """Prefix an ``(n, w)`` big-endian payload with its int32 length (or -1 for nulls)."""
    width = payload.shape[1]
    if valid is None:
        return FixedPart((_int32_be(width), payload), None)
    prefix = _be(np.where(valid, np.int32(width), np.int32(-1)), ">i4")
    return FixedPart((prefix, payload), np.where(valid, 4 + width, 4))


def _be(values: npt.NDArray[Any], dtype: str) -> U8:
    """Big-endian bytes of ``values`` as an ``(n, itemsize)`` matrix."""
    be = np.ascontiguousarray(values, dtype=dtype)
    return be.view(np.uint8).reshape(len(values), be.dtype.itemsize)


def _encode_number(dtype: str) -> Encoder:
    """int/float columns: the wire format is the value buffer byte-swapped to big-endian."""

    def encode(arr: Any) -> list[Part]:
        return [fixed_field(_be(_values(arr, "=" + dtype[1:]), dtype), validity(arr))]

    return encode


def _encode_bool(arr: Any) -> list[Part]:
    """One byte 0/1 per value; Arrow packs bools as bits, so unpack (LSB first)."""
    n = len(arr)
    return [fixed_field(_bits(arr.buffers()[1], arr.offset, n).reshape(n, 1), validity(arr))]


def _encode_date(arr: Any) -> list[Part]:
    """date32 counts days from 1970, PostgreSQL from 2000: shift, then int32 big-endian."""
    days = _values(arr, "=i4").astype(np.int32) - np.int32(PG_EPOCH_DAYS)
    return [fixed_field(_be(days, ">i4"), validity(arr))]


def _encode_timestamp(arr: Any) -> list[Part]:
    """Any unit to int64 microseconds since 2000-01-01 UTC (tz-aware values are UTC instants)."""
    raw = _values(arr, "=i8")
    unit = arr.type.unit
    # Floor division keeps pre-1970/pre-2000 nanosecond values on the right microsecond.
    us = raw // 1000 if unit == "ns" else raw * _US_FACTOR[unit]
    return [fixed_field(_be(us - PG_EPOCH_US, ">i8"), validity(arr))]


def _offsets(arr: Any) -> tuple[I64, U8]:
    """(n + 1 absolute offsets into the trimmed data, data) of a string/binary array."""
    n, off = len(arr), arr.offset
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    raw = np.frombuffer(arr.buffers()[1], dtype="=i8" if large else "=i4", count=off + n + 1)
    offs = raw[off:].astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    # Trim to the slice so a small slice of a huge array does not copy the whole buffer.
    return offs - offs[0], data[offs[0] : offs[-1]]


def _var_field(arr: Any, extra: bytes = b"") -> list[Part]:
    """Length prefix (+ ``extra`` bytes, counted in the length) then the Arrow bytes as is."""
    offs, data = _offsets(arr)
    lengths = np.diff(offs)
    valid = validity(arr)
    if valid is not None:
        lengths = np.where(valid, lengths, 0)
    prefix = _be(lengths + len(extra), ">i4")
    plen: I64 | None = None
    if valid is not None:
        prefix[~valid] = _NULL_PREFIX
        plen = np.where(valid, 4 + len(extra), 4)
    pieces = (prefix, np.frombuffer(extra, dtype=np.uint8).reshape(1, -1))
    return [FixedPart(pieces, plen), VarPart(data, offs[:-1], lengths)]


def _encode_text(arr: Any) -> list[Part]:
    """text-like types and bytea: the binary format is the raw bytes (UTF-8 for text)."""
    return _var_field(arr)


def _encode_jsonb(arr: Any) -> list[Part]:
    return _var_field(arr, b"\x01")  # jsonb binary format version 1, then the JSON text


def _uuid_chars(arr: Any, valid: Mask | None) -> U8:
    """The ``(n, 36)`` characters of a uuid string array (null rows: the nil uuid)."""
    n = len(arr)
    offs, data = _offsets(arr)
    lengths = np.diff(offs)
    if valid is None and len(data) == 36 * n and (lengths == 36).all():
        return data.reshape(n, 36)  # the usual case: no copy at all
    ok = lengths == 36 if valid is None else (lengths == 36) | ~valid
    if not ok.all():
        raise BadValue(int(np.argmin(ok)), "uuid text must be the canonical 36-character form")
    padded = np.concatenate([data, NIL_UUID_TEXT])
    starts = offs[:-1] if valid is None else np.where(valid, offs[:-1], len(data))
    return np.take(padded, starts[:, None] + np.arange(36))


def _encode_uuid(arr: Any) -> list[Part]:
    """Canonical (any case) uuid strings, or fixed_size_binary(16), to the 16 raw bytes
    (``copy_binary_uuid``: by ``bytes.fromhex``, else exactly, naming the first malformed row)."""
    n = len(arr)
    valid = validity(arr)
    if pa.types.is_fixed_size_binary(arr.type):
        return [fixed_field(_values(arr, "u1", 16).reshape(n, 16), valid)]
    chars = _uuid_chars(arr, valid)
    fast = uuid_bytes(chars)
    if fast is not None:
        return [fixed_field(fast, valid)]
    decoded, bad = uuid_bytes_exactly(chars)
    if bad is not None:
        raise BadValue(bad, "malformed uuid text")
    return [fixed_field(decoded, valid)]


def numeric_field(unscaled: int, scale: int) -> bytes:
    """Binary numeric (no length prefix) for ``unscaled * 10**-scale``; exact, any size.

    Output is normalised exactly like PostgreSQL's own numeric_send: no leading or trailing
    zero digit groups, zero as ndigits 0 / weight 0 / sign 0, dscale = max(scale, 0).
    """
    if scale < 0:
        unscaled, scale = unscaled * 10**-scale, 0
    frac_groups = -(-scale // 4)
    magnitude = abs(unscaled) * 10 ** (4 * frac_groups - scale)
    groups: list[int] = []  # least significant first
    while magnitude:
        magnitude, group = divmod(magnitude, 10_000)
        groups.append(group)
    low = 0
    while low < len(groups) and groups[low] == 0:
        low += 1
    digits = groups[low:][::-1]
    if not digits:
        return np.array([(0, 0, 0, 0, scale)], dtype=_NUMERIC_HEADER).tobytes()[4:]
    weight = len(groups) - 1 - frac_groups
    sign = _NUMERIC_NEG if unscaled < 0 else 0
    head = np.array([(0, len(digits), weight, sign, scale)], dtype=_NUMERIC_HEADER)
    return head.tobytes()[4:] + np.array(digits, dtype=">i2").tobytes()


def _numeric_fallback(arr: Any, valid: Mask | None) -> list[Part]:
    """Exact per-value path for decimals whose unscaled value may not fit in int64."""
    raw = _values(arr, "u1", 16).tobytes()
    scale = arr.type.scale
    fields: list[bytes] = []
    for i in range(len(arr)):
        if valid is not None and not valid[i]:
            fields.append(b"\xff\xff\xff\xff")
            continue
        body = numeric_field(int.from_bytes(raw[16 * i : 16 * i + 16], "little", signed=True), scale)
        fields.append(len(body).to_bytes(4, "big") + body)
    lengths = np.fromiter((len(f) for f in fields), dtype=np.int64, count=len(fields))
    starts = np.cumsum(lengths) - lengths
    return [VarPart(np.frombuffer(b"".join(fields), dtype=np.uint8), starts, lengths)]


def _numeric_groups(a: I64, precision: int, scale: int) -> tuple[I64, int]:
    """Fixed-count base-10000 digit groups (n, G) of non-negative ``a / 10**scale``.

    Integer and fractional digits are split before scaling, so nothing exceeds int64.
    Returns the groups and how many of them are integer groups.
    """
    int_groups = max(0, -(-(precision - scale) // 4))
    frac_groups = -(-scale // 4)
    ip, fp = np.divmod(a, np.int64(10**scale))
    groups = np.empty((len(a), int_groups + frac_groups), dtype=np.int64)
    for j in range(int_groups):
        groups[:, j] = (ip // np.int64(10_000 ** (int_groups - 1 - j))) % 10_000
    for k in range(1, frac_groups + 1):
        if 4 * k <= scale:
            groups[:, int_groups + k - 1] = (fp // np.int64(10 ** (scale - 4 * k))) % 10_000
        else:  # last, partial group: remaining digits shifted to the group's top
            rest = fp % np.int64(10 ** (scale - 4 * (k - 1)))
            groups[:, int_groups + k - 1] = rest * np.int64(10 ** (4 * k - scale))
    return groups, int_groups


def _zero_runs(nonzero: Mask) -> tuple[I64, I64]:
    """Per row of an ``(n, G)`` mask, how many False lead and how many trail (G each for a row
    without a True). A loop over the few columns: numpy's row-wise argmax over a short axis
    was ~3x slower."""
    n, width = nonzero.shape
    lead, trail = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for counts, order in ((lead, range(width)), (trail, range(width - 1, -1, -1))):
        still = np.ones(n, dtype=np.bool_)
        for j in order:
            still &= ~nonzero[:, j]
            counts += still
    return lead, trail


def _encode_numeric(arr: Any) -> list[Part]:
    """decimal128 -> numeric; vectorised when every unscaled value fits in int64."""
    n, precision, scale = len(arr), arr.type.precision, arr.type.scale
    valid = validity(arr)
    if precision > 18 or scale < 0:
        return _numeric_fallback(arr, valid)
    words = _values(arr, "=i8", 2).reshape(n, 2)
    lo, hi = words[:, 0], words[:, 1]
    if valid is not None:
        lo, hi = np.where(valid, lo, 0), np.where(valid, hi, 0)
    a = np.abs(lo)
    # Values outside the declared precision (possible with unchecked casts) go the exact way.
    if (hi != (lo >> 63)).any() or (a < 0).any() or (a >= 10**precision).any():
        return _numeric_fallback(arr, valid)
    groups, int_groups = _numeric_groups(a, precision, scale)
    # Normalise like numeric_send: strip leading/trailing zero groups per row.
    lead, trail = _zero_runs(groups != 0)
    any_nz = lead < groups.shape[1]
    ndigits = np.where(any_nz, groups.shape[1] - lead - trail, 0)
    lead = np.where(any_nz, lead, 0)
    head = np.empty(n, dtype=_NUMERIC_HEADER)
    head["len"] = 8 + 2 * ndigits
    head["ndigits"] = ndigits
    head["weight"] = np.where(any_nz, int_groups - 1 - lead, 0)
    head["sign"] = np.where(any_nz & (lo < 0), _NUMERIC_NEG, 0)
    head["dscale"] = scale
    head_bytes = head.view(np.uint8).reshape(n, 12)
    head_len: I64 | None = None
    if valid is not None:
        head_bytes[~valid, :4] = _NULL_PREFIX
        head_len = np.where(valid, 12, 4)
    width = 2 * groups.shape[1]
    digits = groups.astype(">i2").view(np.uint8).reshape(-1)
    starts = np.arange(n, dtype=np.int64) * width + 2 * lead
    return [FixedPart((head_bytes,), head_len), VarPart(digits, starts, 2 * ndigits)]


def _is_str(t: Any) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_uuid(t: Any) -> bool:
    return _is_str(t) or bool(pa.types.is_fixed_size_binary(t) and t.byte_width == 16)


def _is_bytes(t: Any) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))


def _is_ts(tz: bool) -> Callable[[Any], bool]:
    return lambda t: bool(pa.types.is_timestamp(t) and (t.tz is not None) == tz)


def _is(expected: Any) -> Callable[[Any], bool]:
    return lambda t: bool(t == expected)


#: typname -> (accepts Arrow type?, encoder)
ENCODERS: dict[str, tuple[Callable[[Any], bool], Encoder]] = {
    "int2": (_is(pa.int16()), _encode_number(">i2")),
    "int4": (_is(pa.int32()), _encode_number(">i4")),
    "int8": (_is(pa.int64()), _encode_number(">i8")),
    "float4": (_is(pa.float32()), _encode_number(">f4")),
    "float8": (_is(pa.float64()), _encode_number(">f8")),
    "bool": (_is(pa.bool_()), _encode_bool),
    "text": (_is_str, _encode_text),
    "varchar": (_is_str, _encode_text),
    "bpchar": (_is_str, _encode_text),
    "name": (_is_str, _encode_text),
    "json": (_is_str, _encode_text),
    "jsonb": (_is_str, _encode_jsonb),
    "uuid": (_is_uuid, _encode_uuid),
    "bytea": (_is_bytes, _encode_text),
    "date": (_is(pa.date32()), _encode_date),
    "timestamp": (_is_ts(False), _encode_timestamp),
    "timestamptz": (_is_ts(True), _encode_timestamp),
    "numeric": (pa.types.is_decimal128, _encode_numeric),
}
