"""Schema, pure: what a batch's columns are, and casting a batch to a destination table's columns.

Casting is vectorised; only a column whose cast fails is walked value by value to find the rows
that cannot be converted, which are then rejected (never silently nulled or truncated).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.arrowutil import to_text

LOGICAL = b"conduitd.logical"
"""Field metadata a source puts on a text column whose values it knows to be of a type Arrow
carries as an extension (`uuid`: canonical 36-character uuids; `json`: JSON documents). The
values stay strings (quality rules, casts, the DLQ and text columns see them as before); a new
destination column is chosen by `logical_type`: uuid, jsonb, JSON."""
_LOGICAL_TYPES = {b"uuid": pa.uuid(), b"json": pa.json_()}

_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


@dataclass(frozen=True, slots=True)
class Column:
    """A destination column: its name, the Arrow type values are cast to, and its SQL type."""

    name: str
    arrow: pa.DataType
    sql: str
    json: bool = False
    """Values are JSON text (nested objects and lists are serialised)."""
    native: str = ""
    """The destination's own name of the type (pg_type.typname for PostgreSQL), where it has one."""


class LiveColumns(dict[str, Column]):
    """A live table's columns, with how many more its destination counts against its column
    limit (PostgreSQL counts dropped columns until the table is rewritten). Compares as a dict."""

    def __init__(self, columns: Mapping[str, Column], hidden: int = 0) -> None:
        super().__init__(columns)
        self.hidden = hidden


def column_slots(live: Mapping[str, Column] | None) -> int:
    """How many of its destination's column slots a table takes."""
    return 0 if live is None else len(live) + (live.hidden if isinstance(live, LiveColumns) else 0)


@dataclass(frozen=True, slots=True)
class CastFailure:
    """A value that cannot be stored in its column."""

    row: int
    column: str
    value: str
    reason: str


def with_logical(table: pa.Table, logical: Mapping[str, str]) -> pa.Table:
    """`table` with its text columns named in `logical` marked as holding values of that kind
    (`uuid` or `json`; see `LOGICAL`)."""
    if not logical:
        return table
    fields = [fld.with_metadata({**(fld.metadata or {}), LOGICAL: logical[fld.name].encode()})
              if fld.name in logical and pa.types.is_string(fld.type) else fld for fld in table.schema]
    return table.cast(pa.schema(fields, table.schema.metadata))


def logical_type(fld: pa.Field) -> pa.DataType:
    """The type a new destination column is chosen by: `pa.uuid()` or `pa.json_()` for a text
    field its source marked (see `LOGICAL`), else the field's own type."""
    if fld.metadata and pa.types.is_string(fld.type):
        return _LOGICAL_TYPES.get(fld.metadata.get(LOGICAL, b""), fld.type)
    return fld.type


def extension_name(kind: pa.DataType) -> str:
    """`arrow.uuid`, `arrow.json`... for a (canonical) extension type, else ''."""
    return str(getattr(kind, "extension_name", ""))


def refine_types(table: pa.Table) -> pa.Table:
    """Give string columns whose every value is an ISO-8601 timestamp with a zone a timestamp type,
    so a new table gets `timestamptz` rather than `text` for them."""
    for index, fld in enumerate(table.schema):
        if not pa.types.is_string(fld.type) or logical_type(fld) != fld.type:
            continue
        column = table.column(index)
        valid = column.drop_null()
        if len(valid) == 0 or not pc.all(pc.match_substring_regex(valid, _ISO_TIMESTAMP)).as_py():
            continue
        try:
            table = table.set_column(index, fld.name, column.cast(pa.timestamp("us", tz="UTC")))
        except _CAST_ERRORS:
            continue
    return table


def conform(rows: pa.Table, columns: Mapping[str, Column]) -> tuple[pa.Table, list[CastFailure], np.ndarray]:
    """Cast `rows` to `columns` (only those the batch has), dropping rows with a value that cannot
    be cast. Returns the table, the failures (row = index in `rows`) and the kept row indexes."""
    arrays: list[pa.Array] = []
    names: list[str] = []
    failures: list[CastFailure] = []
    bad = np.zeros(rows.num_rows, dtype=bool)
    for name in rows.column_names:
        target = columns.get(name)
        if target is None:
            continue
        array, failed = cast_column(rows.column(name), target)
        for row in np.flatnonzero(failed):
            value = rows.column(name)[int(row)].as_py()
            failures.append(CastFailure(int(row), name, str(value)[:1000],
                                        f"column {name!r}: cannot store {str(value)[:80]!r} as {target.sql}"))
        bad |= failed
        arrays.append(array)
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names) if names else pa.table({})
    kept = np.flatnonzero(~bad)
    if bad.any():
        table = table.filter(pa.array(~bad))
    return table, failures, kept


def cast_column(column: pa.ChunkedArray | pa.Array, target: Column) -> tuple[pa.Array, np.ndarray]:
    """The column as `target.arrow` and a mask of rows that could not be converted (set to null)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        return _cast(array, target), np.zeros(len(array), dtype=bool)
    except _CAST_ERRORS:
        pass
    values: list[object] = []
    failed = np.zeros(len(array), dtype=bool)
    for index in range(len(array)):
        try:
            values.append(_cast(array.slice(index, 1), target)[0].as_py())
        except _CAST_ERRORS:
            values.append(None)
            failed[index] = True
    return pa.array(values, type=target.arrow), failed


def _cast(array: pa.Array, target: Column) -> pa.Array:
    source = array.type
    wanted = target.arrow
    if source == wanted:
        return array
    if target.json or pa.types.is_string(wanted):
        if pa.types.is_timestamp(source) and not target.json:
            return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S" + ("Z" if source.tz else ""))
        if pa.types.is_nested(source) or not target.json:
            return to_text(array)
        if pa.types.is_string(source) or pa.types.is_large_string(source):
            return array.cast(pa.string())
        return to_text(array)  # numbers and booleans are valid JSON as written
    if pa.types.is_null(source):
        return pa.nulls(len(array), type=wanted)
    if pa.types.is_decimal(wanted) and not pa.types.is_integer(source):
        return _to_decimal(array, wanted)
    if pa.types.is_timestamp(wanted) and (pa.types.is_string(source) or pa.types.is_large_string(source)):
        return _parse_timestamps(array, wanted)
    if pa.types.is_timestamp(wanted) and pa.types.is_timestamp(source) and bool(wanted.tz) != bool(source.tz):
        if wanted.tz:
            return pc.assume_timezone(array, "UTC").cast(wanted)
        return array.cast(pa.timestamp(source.unit, tz="UTC")).cast(pa.timestamp(source.unit)).cast(wanted)
    if re.match(r"^u?int", str(wanted)) and pa.types.is_floating(source):
        return array.cast(wanted, safe=True)  # 2.0 -> 2; 2.5 fails and is rejected
    return array.cast(wanted, safe=True)


def _to_decimal(array: pa.Array, wanted: pa.Decimal128Type) -> pa.Array:
    """Floats go through their shortest text form, never through binary (3703.6 stays 3703.6);
    extra digits round half away from zero, as PostgreSQL rounds them."""
    if not pa.types.is_decimal(array.type):
        text = array.cast(pa.string())
        try:
            return text.cast(wanted)  # refused where digits would be lost: then rounded below
        except _CAST_ERRORS:
            array = text.cast(pa.decimal128(38, max(wanted.scale, 12)))
    if array.type.scale > wanted.scale:
        array = pc.round(array, ndigits=wanted.scale, round_mode="half_towards_infinity")
    return array.cast(wanted)


def _parse_timestamps(array: pa.Array, wanted: pa.TimestampType) -> pa.Array:
    text = array.cast(pa.string())
    if wanted.tz:
        try:
            return text.cast(pa.timestamp(wanted.unit, tz="UTC")).cast(wanted)
        except _CAST_ERRORS:
            return pc.assume_timezone(text.cast(pa.timestamp(wanted.unit)), "UTC").cast(wanted)
    return text.cast(wanted)


def create_table_sql(target: str, columns: Sequence[Column], key: Sequence[str],
                     quote: Callable[[str], str]) -> str:
    """CREATE TABLE text for any dialect: `target` is the quoted table, `quote` quotes a column."""
    parts = [f"{quote(c.name)} {c.sql}" for c in columns]
    if key:
        parts.append(f"PRIMARY KEY ({', '.join(quote(k) for k in key)})")
    return f"CREATE TABLE {target} ({', '.join(parts)})"
