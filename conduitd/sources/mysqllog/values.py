"""A binlog row's values (the Python objects `mysql-replication` decodes) as the server's own
text, the form the polling source reads and `tables.mysql_catalog.decode` parses with the
catalog's types: so a row from the log and the same row from the snapshot become equal Arrow
values. Pure.

    int, Decimal         their digits (a Decimal never in exponent form)
    float                repr: exact for a DOUBLE, and for a FLOAT the float32's exact value
    datetime, date       ISO text with a space (TIMESTAMP arrives as UTC, as the snapshot reads it)
    timedelta (TIME)     [-]HH:MM:SS[.ffffff] with the column's fractional digits (a negative
                         one with a fraction corrected: `true_time`)
    set                  its members in the column's order, comma-separated ('' for the empty set)
    BIT (a '0101' text)  its unsigned integer
    YEAR                 0 for the zero year (the library reads it as 1900, a year YEAR cannot hold)
    dict, list (JSON)    JSON text (MySQL's binary JSON; MariaDB's JSON is a text already)
    bytes, str           as they are

A value the library could not decode (a zero or invalid date, a column missing from a MINIMAL row
image, a partial JSON update) is a problem: the row goes to the DLQ with the reason, never a
null standing for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

_FINE_NONE = {"null", "empty set"}
_BIT = 16
_YEAR = 13
_TIME2 = 19


def time_text(value: dt.timedelta, digits: int) -> str:
    """A TIME value as the server writes it: hours may exceed 24 and the value may be negative."""
    micros = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    seconds, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if digits:
        text += "." + f"{fraction:06d}"[:digits]
    return text


def true_time(value: dt.timedelta) -> dt.timedelta:
    """A negative TIME with a fraction as stored: mysql-replication 1.0 decodes -T-f as -(T+1)+f
    (it negates the whole seconds and adds the stored fraction as a positive one)."""
    micros = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
    whole, fraction = divmod(micros, 1_000_000)  # floor and the positive fraction
    if micros >= 0 or fraction == 0:
        return value
    return dt.timedelta(microseconds=whole * 1_000_000 + (1_000_000 - fraction))


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def as_text(value: object, column: Any = None) -> str | bytes | None:
    """One value as server text (bytes for binary columns); `column` is the library's column
    description (type, fsp, set_values), or None."""
    kind = getattr(column, "type", None)
    if value is None:
        return None
    if isinstance(value, bytes | str) and kind != _BIT:
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "0" if kind == _YEAR and value == 1900 else str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        digits = int(getattr(column, "fsp", 0) or 0)
        return time_text(true_time(value) if kind == _TIME2 else value, digits)
    if isinstance(value, set | frozenset):
        order = list(getattr(column, "set_values", None) or sorted(value))
        return ",".join(v for v in order if v in value)
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_default).decode()
    if kind == _BIT and isinstance(value, str):
        return str(int(value, 2)) if value else "0"
    raise TypeError(f"a value of type {type(value).__name__}")


def row_texts(values: Mapping[str, object], none_sources: Mapping[str, str],
              columns: Sequence[Any]) -> tuple[dict[str, str | bytes | None], str]:
    """A binlog row as {column: text}, and why it cannot be written whole ('' when it can)."""
    by_name = {getattr(c, "name", None): c for c in columns}
    out: dict[str, str | bytes | None] = {}
    problem = ""
    for name, value in values.items():
        column = by_name.get(name)
        if value is None:
            source = none_sources.get(name, "null")
            if source == "empty set":
                out[name] = ""
                continue
            if source not in _FINE_NONE and not problem:
                problem = f"column {name!r}: the binlog value could not be decoded ({source})"
            out[name] = None
            continue
        try:
            out[name] = as_text(value, column)
        except (TypeError, ValueError) as exc:
            problem = problem or f"column {name!r}: {exc} cannot be written exactly"
            out[name] = None
    if not problem:
        unnamed = [n for n in values if str(n).startswith("UNKNOWN_COL")]
        if unnamed:
            problem = ("the binlog row has no column names: set binlog_row_metadata=FULL on the server "
                       "(MariaDB 10.5+, MySQL 8.0.1+)")
    return out, problem
