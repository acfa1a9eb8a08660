"""JSON numbers that a double does not hold, kept exact (pure; used by `decode`).

pyarrow reads a JSON number with a fraction, or an integer beyond int64, as a double, which keeps
about 17 significant digits: `1.0000000000000000000000001` became 1.0, a 45-digit integer lost
its last 29 digits, `1e-400` became 0. A number is *held* by a double when the double's shortest
text is the same number. When one is not, or an integer reaches 2**53, its field is read exactly
from the text instead:

- a top-level field becomes a decimal at the smallest scale that holds its values (decimal128 up
  to 38 digits, decimal256 up to 76), or exact text where no decimal holds them (more digits, or
  a negative zero, which decimals do not have);
- a record with such a number inside an array or an object (read as doubles) is refused, with
  the reason, for the DLQ.

Finding them costs one `bytes.translate` and a few `find`s over the block, for fractions of 18 or
more digits (a double prints in at most 17), and a vectorised look at the values of double
fields, nested ones too: from 2**53, infinite (an exponent too large) or below the smallest normal
double, zero included (an exponent too small: `1e-400` reads as 0). Only their lines are parsed
again.
Numbers of 16 or 17 digits that are not the shortest text of their double are not seen: they read
back with their last digit changed (0.12345678901234567 reads back as 0.12345678901234566).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Context, Decimal, InvalidOperation
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.bytescan import digit_run
from conduitd.core.lines import line_bounds

_EXACT_IN_DOUBLE = 2**53
_LONG = 19
"""Digits and a point in a row from which a fraction may not be held (a double prints in <= 17
digits); integers are found by value instead (from 2**53, which 16 digits reach)."""
_SHAPES = bytes.maketrans(b"0123456789.eE+-", b"00000000000ee--")
_SHAPES = bytes(c if c in b"0e-" else 32 for c in _SHAPES)  # everything else a space
_HITS = (b"0" * _LONG,)
_SMALLEST_NORMAL = 2.2250738585072014e-308
_BEFORE = frozenset(b":,[ \t\r\n")
_AFTER = frozenset(b",}] \t\r\n")
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class Exact(NamedTuple):
    table: pa.Table
    refused: dict[int, str]
    """Rows (one per line of the block) refused, with the reason; the table is then not usable."""


def exact_numbers(table: pa.Table, block: bytes) -> Exact | None:
    """The table with every number as written (see the module docstring); None when its rows are
    not the block's lines one for one (the caller reads such a block line by line anyway)."""
    floating = [i for i, f in enumerate(table.schema) if _has_float(f.type)]
    if not floating:
        return Exact(table, {})
    rows = set(_rows_of_unheld_tokens(block))
    for index in floating:
        rows.update(np.flatnonzero(_big(table.column(index).combine_chunks())).tolist())
    if not rows:
        return Exact(table, {})
    starts, ends = line_bounds(block)
    if len(starts) != table.num_rows:
        return None
    exact: dict[str, dict[int, Any]] = {}
    flagged: set[str] = set()
    refused: dict[int, str] = {}
    floats = {table.schema.field(i).name for i in floating if pa.types.is_floating(table.schema.field(i).type)}
    for row in sorted(rows):
        try:
            record = json.loads(block[starts[row]:ends[row]], parse_float=Decimal)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        for name, value in record.items():
            if name in floats and _is_number(value):
                exact.setdefault(name, {})[row] = value
                if not _held(value) or _magnitude(value) >= _EXACT_IN_DOUBLE:
                    flagged.add(name)
            elif isinstance(value, dict | list) and name in table.column_names:
                unheld = _unheld_inside(value, table.schema.field(name).type)
                if unheld is not None:
                    refused[row] = (f"field {name!r} holds the number {_shown(unheld)} inside an array or object, "
                                    "where numbers are read as doubles: a double would change it")
                    break
    if refused:
        return Exact(table, refused)
    for name in flagged:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, _column(table.column(index).to_pylist(), exact[name]))
    return Exact(table, {})


def _has_float(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_float(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_float(kind.value_type)
    return False


def _big(array: pa.Array) -> np.ndarray:
    """Rows holding a double a number may not have been read exactly into, anywhere in them
    (nested too): from 2**53, infinite, or below the smallest normal double (zero included)."""
    kind = array.type
    if pa.types.is_floating(kind):
        size = pc.abs(array)  # inf from 1e400; 0 or a subnormal from 1e-400: their text says which
        suspect = pc.or_(pc.greater_equal(size, float(_EXACT_IN_DOUBLE)), pc.less(size, _SMALLEST_NORMAL))
        return np.asarray(suspect.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    mask = np.zeros(len(array), dtype=bool)
    if pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            if _has_float(kind.field(i).type):
                mask |= _big(pc.struct_field(array, [i]))
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _has_float(kind.value_type):
        inner = _big(pc.list_flatten(array))
        if inner.any():
            parents = np.asarray(pc.list_parent_indices(array).to_numpy(zero_copy_only=False))
            mask[np.unique(parents[inner])] = True
    return mask


def _rows_of_unheld_tokens(block: bytes) -> list[int]:
    """Lines with a long number (or a long run of digits in a string: a false alarm costs only a
    parse) that a double does not hold."""
    if not digit_run(block, _LONG):  # one pass; in the usual case the only one
        return []
    shapes = block.translate(_SHAPES)
    found: set[tuple[int, int]] = set()
    for hit in _HITS:
        at = shapes.find(hit)
        while at >= 0:
            start = shapes.rfind(b" ", 0, at) + 1  # the token around the hit (C-speed searches:
            end = shapes.find(b" ", at + len(hit))  # UUIDs in strings make many hits)
            end = len(shapes) if end < 0 else end
            # A JSON number stands between a ':', ',' or '[' and a ',', '}' or ']' (spaces aside);
            # anything else is inside a string (a UUID's "-7e6265"): no number.
            if (start == 0 or block[start - 1] in _BEFORE) and (end == len(block) or block[end] in _AFTER) \
                    and _NUMBER.fullmatch(block, start, end):
                found.add((start, end))
            at = shapes.find(hit, end)
    if not found:
        return []
    line_starts, _ = line_bounds(block)
    unheld = [start for start, end in found if not _held_text(block[start:end])]
    return sorted({int(i) for i in np.searchsorted(line_starts, unheld, side="right") - 1})


def _held_text(token: bytes) -> bool:
    try:
        return _held(Decimal(token.decode("ascii")))
    except (InvalidOperation, UnicodeDecodeError):
        return False  # not a number (a run in a string, say): look at its line


def _held(value: Decimal | int) -> bool:
    """Whether a double's shortest text is this number."""
    try:
        double = float(value)
    except OverflowError:
        return False
    return math.isfinite(double) and Decimal(repr(double)) == value


def _magnitude(value: Decimal | int) -> Decimal | int:
    return value.copy_abs() if isinstance(value, Decimal) else abs(value)  # exact: no context rounding


def _is_number(value: Any) -> bool:
    return isinstance(value, Decimal | int) and not isinstance(value, bool)


def _unheld_inside(value: Any, kind: pa.DataType) -> Decimal | int | None:
    """The first number nested in `value` that is read as a double (by `kind`, the field's type)
    and that a double does not hold; walked iteratively."""
    pending: list[tuple[Any, pa.DataType]] = [(value, kind)]
    while pending:
        item, item_kind = pending.pop()
        if pa.types.is_struct(item_kind) and isinstance(item, dict):
            pending.extend((item.get(item_kind.field(i).name), item_kind.field(i).type)
                           for i in range(item_kind.num_fields))
        elif (pa.types.is_list(item_kind) or pa.types.is_large_list(item_kind)) and isinstance(item, list):
            pending.extend((element, item_kind.value_type) for element in item)
        elif pa.types.is_floating(item_kind) and _is_number(item) and not _held(item):
            return item  # type: ignore[no-any-return]
    return None


def _shown(value: Decimal | int) -> str:
    text = str(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def _column(doubles: list[float | None], exact: dict[int, Decimal | int]) -> pa.Array:
    """A field's values exactly: as read again where its line was, else the double (whose
    shortest text is the number written, or its line would have been read again)."""
    values: list[Decimal | None] = [None if v is None else Decimal(exact[i]) if i in exact else Decimal(repr(v))
                                    for i, v in enumerate(doubles)]
    present = [v for v in values if v is not None]
    shapes = [_shape(v) for v in present]
    scale = max((fraction for _, fraction in shapes), default=0)
    digits = max((integer for integer, _ in shapes), default=0) + scale
    if digits <= 76 and not any(v.is_zero() and v.is_signed() for v in present):
        # At the scale exactly (only zeros go): pyarrow refuses to drop trailing zeros itself.
        unit, context = Decimal(1).scaleb(-scale), Context(prec=80)
        return pa.array([None if v is None else v.quantize(unit, context=context) for v in values],
                        pa.decimal128(38, scale) if digits <= 38 else pa.decimal256(76, scale))
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _shape(value: Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it) of `value` written without trailing zeros."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: JSON has no NaN or infinity
    if not any(digits):
        return 1, 0  # zero, however written (0.0, 0E-7)
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0:
        kept -= 1
        exponent += 1
    return max(0, kept + exponent), max(0, -exponent)


def _text(value: Decimal) -> str:
    """The number as text without trailing zeros (1.0 -> 1, -0.0 -> -0), and without an exponent
    where that is short enough."""
    plain = format(value, "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain if len(plain) <= 80 else str(value)
