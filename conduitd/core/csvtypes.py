"""Which CSV columns of text may be read as another type: only those where no value would change.

A column becomes an integer, a float, a boolean or a date when every value is exactly how that
type writes the value back as text (Arrow's spelling, which is also what the cast to a text
column writes): `42`, `-7`, `1.5`, `true`, `2026-01-31`. One value that would not round-trip
(`00501`, `+3`, ` 7`, `1.50`, `1e3`, `TRUE`, `NaN`, `-0`) keeps the whole column text. Timestamps stay
text here: their text form is not unique (`T` or space, trailing zeros, zones), and a column of
ISO-8601 timestamps with a zone is made `timestamptz` when a table is created (schema.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

_INTEGER = r"^(0|-?[1-9][0-9]*)$"
_DATE = r"^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-[0-9]{2}-[0-9]{2}$"  # year 0 exists nowhere
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def infer_types(table: pa.Table) -> pa.Table:
    """The table with each text column given the first type it fits exactly (see above); a
    column with no value at all gets the null type (as a JSON `null` does)."""
    for index, fld in enumerate(table.schema):
        if not pa.types.is_string(fld.type):
            continue
        column = table.column(index).combine_chunks()
        values = column.drop_null()
        if len(values) == 0:
            table = table.set_column(index, fld.name, pa.nulls(len(column)))
            continue
        for kind, fits in _CANDIDATES:
            if fits(values):
                table = table.set_column(index, fld.name, column.cast(kind))
                break
    return table


def _round_trips(kind: pa.DataType, pattern: str | None = None) -> Callable[[pa.Array], bool]:
    def fits(values: pa.Array) -> bool:
        if pattern is not None and not pc.all(pc.match_substring_regex(values, pattern)).as_py():
            return False
        try:
            parsed = values.cast(kind)
        except _CAST_ERRORS:
            return False
        if pa.types.is_floating(kind) and not _finite_and_signed(parsed):
            return False
        return bool(pc.all(pc.equal(parsed.cast(pa.string()), values)).as_py())
    return fits


def _finite_and_signed(parsed: pa.Array) -> bool:
    """No NaN or infinity (no column type other than a float holds them), and no negative zero:
    `-0` prints back as `-0` from a double, but SQLite stores -0.0 as 0 (it reads back `0.0`)."""
    if not pc.all(pc.is_finite(parsed)).as_py():
        return False
    negative_zero = pc.and_(pc.equal(parsed, 0), pc.less(pc.divide(pa.scalar(1.0), parsed), 0))
    return not pc.any(negative_zero).as_py()


def _booleans(values: pa.Array) -> bool:
    return bool(pc.all(pc.is_in(values, pa.array(["true", "false"]))).as_py())


_CANDIDATES: list[tuple[pa.DataType, Callable[[pa.Array], bool]]] = [
    (pa.int64(), _round_trips(pa.int64(), _INTEGER)),
    (pa.float64(), _round_trips(pa.float64())),
    (pa.bool_(), _booleans),
    (pa.date32(), _round_trips(pa.date32(), _DATE)),
]
