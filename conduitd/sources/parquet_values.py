"""Parquet values that the rest of the pipeline cannot take as they are, made writable or rejected.

- NaN becomes null, as the seed tool did (a NaN in a database column is almost never what the
  writer of a pandas frame meant); the count is logged.
- Nanosecond timestamps, times and durations (pandas' default unit) become microseconds, the
  finest unit the destinations and Python hold: losslessly when every value is a whole number of
  microseconds, else truncated with a logged warning.
- Dates and timestamps outside 0001-01-01 .. 9999-12-31 (valid in Parquet, not in Python's
  datetime that DLQ payloads and row-by-row checks go through) send their row to the DLQ with the
  column and value, instead of crashing the pipeline.
Nested values (structs, lists) are handled the same way as top-level columns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.records import Position, Reject

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1)
_FIRST, _LAST = dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}
_SECONDS_PER_YEAR = 31_556_952


def _bounds(unit: str) -> tuple[int, int]:
    """The smallest and largest value of a timestamp in `unit` inside years 1..9999."""
    scale = _PER_SECOND[unit]
    first = (_FIRST - _EPOCH) // dt.timedelta(microseconds=1) * scale // 1_000_000
    last = (_LAST - _EPOCH) // dt.timedelta(microseconds=1) * scale // 1_000_000
    return first, last


_DAY_BOUNDS = ((dt.date(1, 1, 1) - _EPOCH.date()).days, (dt.date(9999, 12, 31) - _EPOCH.date()).days)


@dataclass
class Notes:
    """What was changed in one file, logged once per chunk."""

    nan: int = 0
    truncated: bool = False


def make_writable(rows: pa.Table, path: str, first_row: int,
                  position_of: Callable[[int], Position]) -> tuple[pa.Table, list[Reject]]:
    """`rows` (rows `first_row`.. of the file) made writable; rows that cannot be, as rejects whose
    position is `position_of(row number after them)`."""
    bad = np.zeros(rows.num_rows, dtype=bool)
    why: dict[int, str] = {}
    for name, column in zip(rows.column_names, rows.columns, strict=True):
        mask = _out_of_range(column.combine_chunks())
        for index in np.flatnonzero(mask & ~bad).tolist():
            why[index] = (f"column {name!r}: {_describe(column[index])} is outside the dates conduitd writes "
                          "(0001-01-01 to 9999-12-31)")
        bad |= mask
    rejects = [Reject(path, position_of(first_row + index + 1), why[index], _payload(rows, index))
               for index in np.flatnonzero(bad).tolist()]
    if rejects:
        rows = rows.filter(pa.array(~bad))
    notes = Notes()
    columns = [_fixed(column.combine_chunks(), notes) for column in rows.columns]
    rows = pa.Table.from_arrays(columns, names=rows.column_names)
    if notes.nan:
        log.info("%s: %d NaN value(s) read as null", path, notes.nan)
    if notes.truncated:
        log.warning("%s: nanosecond timestamps, times or durations truncated to microseconds "
                    "(the finest unit the destinations keep)", path)
    return rows, rejects


def _fixed(array: pa.Array, notes: Notes) -> pa.Array:
    array = _nan_to_null(array, notes)
    target = _microseconds(array.type)
    if target == array.type:
        return array
    try:
        return array.cast(target, safe=True)
    except pa.ArrowInvalid:
        notes.truncated = True
        return array.cast(target, safe=False)


def _microseconds(kind: pa.DataType) -> pa.DataType:
    """`kind` with every nanosecond unit made microseconds."""
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", tz=kind.tz)
    if pa.types.is_time64(kind) and kind.unit == "ns":
        return pa.time64("us")
    if pa.types.is_duration(kind) and kind.unit == "ns":
        return pa.duration("us")
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_microseconds(f.type)) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_microseconds(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_microseconds(kind.value_type)))
    return kind


def _nan_to_null(array: pa.Array, notes: Notes) -> pa.Array:
    kind = array.type
    if pa.types.is_floating(kind):
        nan = pc.fill_null(pc.is_nan(array), False)
        count = int(pc.sum(nan).as_py() or 0)
        if not count:
            return array
        notes.nan += count
        return pc.if_else(nan, pa.scalar(None, kind), array)
    if pa.types.is_struct(kind):
        children = [_nan_to_null(child, notes) for child in array.flatten()]
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=_nulls(array))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values = _nan_to_null(array.flatten(), notes)
        offsets = np.asarray(array.offsets) - int(array.offsets[0].as_py())
        build = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        return build.from_arrays(pa.array(offsets, type=array.offsets.type), values,
                                 type=_list_type(kind, values.type), mask=_nulls(array))
    return array


def _list_type(kind: pa.DataType, value_type: pa.DataType) -> pa.DataType:
    field = kind.value_field.with_type(value_type)
    return pa.list_(field) if pa.types.is_list(kind) else pa.large_list(field)


def _nulls(array: pa.Array) -> pa.Array:
    return pc.fill_null(pc.is_null(array), False) if array.null_count else pa.array(np.zeros(len(array), bool))


def _out_of_range(array: pa.Array) -> np.ndarray:
    """Per value of `array`: does it hold a date or timestamp outside years 1..9999?"""
    kind = array.type
    if pa.types.is_timestamp(kind) and kind.unit in _PER_SECOND:
        low, high = _bounds(kind.unit)
    elif pa.types.is_date32(kind):
        low, high = _DAY_BOUNDS
    elif pa.types.is_date64(kind):
        low, high = _DAY_BOUNDS[0] * 86_400_000, _DAY_BOUNDS[1] * 86_400_000 + 86_399_999
    elif pa.types.is_struct(kind):
        found = np.zeros(len(array), dtype=bool)
        for child in array.flatten():
            found |= _out_of_range(child)
        return found
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        found = np.zeros(len(array), dtype=bool)
        inner = _out_of_range(array.flatten())
        if inner.any():
            parents = np.asarray(pc.list_parent_indices(array))
            found[np.unique(parents[inner])] = True
        return found
    else:
        return np.zeros(len(array), dtype=bool)
    raw = array.view(pa.int64() if kind.bit_width == 64 else pa.int32())
    values = np.asarray(pc.fill_null(raw, 0))
    return np.asarray((values < low) | (values > high))


def _describe(value: pa.Scalar) -> str:
    kind = value.type
    try:
        return repr(value.as_py())
    except (ValueError, OverflowError):
        pass
    text = _as_text(value)
    if text is not None:
        return text
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        raw = value.cast(pa.int64() if kind.bit_width == 64 else pa.int32()).as_py()
        per_second = 1 / 86_400 if pa.types.is_date32(kind) else (
            1_000 if pa.types.is_date64(kind) else _PER_SECOND.get(kind.unit, 10**9))
        unit = "days" if pa.types.is_date32(kind) else ("ms" if pa.types.is_date64(kind) else kind.unit)
        year = 1970 + raw / per_second / _SECONDS_PER_YEAR
        return f"{raw} {unit} since 1970-01-01 (about year {year:,.0f})"
    return "a value"


def _as_text(value: pa.Scalar) -> str | None:
    """Arrow's own text for a value Python cannot hold (a nanosecond timestamp), if it has one."""
    try:
        text = pc.cast(value, pa.string()).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None if text is None or text.startswith("<value out of range") else str(text)


def _payload(rows: pa.Table, index: int) -> str:
    """The row as JSON, with values Python cannot hold described in words."""
    record: dict[str, object] = {}
    for name, column in zip(rows.column_names, rows.columns, strict=True):
        value = column[index]
        try:
            record[name] = value.as_py()
        except (ValueError, OverflowError):
            nested = pa.types.is_nested(value.type)
            record[name] = column.slice(index, 1).to_string() if nested else _as_text(value) or _describe(value)
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
