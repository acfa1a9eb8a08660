"""What a MySQL/MariaDB relation's columns are, how each is selected and which Arrow type its text
becomes (exactly: no float for a DECIMAL, no rounding of a FLOAT, no zone invented for a DATETIME).

The connection decodes nothing (`asyncmy` without decoders): every value arrives as the server's
own text (bytes for binary columns) and Arrow parses it, column by column (`decode`): a value the
type cannot hold (a zero date, a TINYINT(1) holding 2) makes its row a reject with the reason.

    TINYINT(1) / BOOLEAN       bool (0 and 1; any other value is a reject); TINYINT(n), n > 1, or
                               TINYINT UNSIGNED stays an integer. MySQL 8 keeps the display width
                               of TINYINT(1) alone, so the catalog tells the two apart on both.
    TINYINT, SMALLINT          int16 (unsigned SMALLINT: int32)
    MEDIUMINT, INT             int32 (unsigned INT: int64)
    BIGINT                     int64; BIGINT UNSIGNED: decimal(20,0)
    DECIMAL(p,s)               decimal128(p,s), decimal256 beyond 38 digits
    FLOAT, DOUBLE              float32, float64 (a FLOAT is selected as DOUBLE: its text is exact)
    BIT(n)                     int64 (BIT(64): decimal(20,0)); selected as an unsigned integer
    DATE                       date32; DATETIME: naive timestamp[us]; TIMESTAMP: timestamp[us, UTC]
                               (the session's time zone is +00:00)
    YEAR                       int16
    BINARY, VARBINARY, BLOBs,  binary
      GEOMETRY
    everything else            text: CHAR, VARCHAR, TEXTs, JSON, ENUM, SET, TIME (its range is
                               beyond a time of day), MariaDB's UUID and INET

JSON columns (MySQL's JSON; MariaDB's, a LONGTEXT with the column check `json_valid(col)` its JSON
type creates: `json_checked` finds them) and MariaDB's UUID columns are text marked as JSON or uuid
(`SourceColumn.logical`): the destination gives them its JSON and uuid types.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.records import Position, Reject
from conduitd.core.schema import with_logical
from conduitd.sources.tables.catalog import SourceColumn

_INTEGERS = {"tinyint": (pa.int16(), pa.int16()), "smallint": (pa.int16(), pa.int32()),
             "mediumint": (pa.int32(), pa.int32()), "int": (pa.int32(), pa.int64()),
             "integer": (pa.int32(), pa.int64()), "bigint": (pa.int64(), pa.decimal128(20, 0)),
             "year": (pa.int16(), pa.int16())}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point", "linestring",
           "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection"}
_DECIMAL = re.compile(r"^decimal\((\d+)(?:,(\d+))?\)")
_WIDTH = re.compile(r"^\w+\((\d+)\)")

COLUMNS_SQL = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, TABLE_NAME FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"""

PRIMARY_KEY_SQL = """
SELECT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX"""

JSON_CHECKS_SQL = """
SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s AND LEVEL = 'Column'"""
"""MariaDB's column checks (MySQL's CHECK_CONSTRAINTS has neither TABLE_NAME nor LEVEL: it has a
JSON type of its own)."""

INDEX_LEADS_SQL = """
SELECT DISTINCT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND SEQ_IN_INDEX = 1"""


def column(name: str, data_type: str, column_type: str, json_checked: bool = False) -> SourceColumn:
    """A column as `information_schema.COLUMNS` describes it: `sql_type` is its COLUMN_TYPE
    (`decimal(65,30)`, `bigint(20) unsigned`, `tinyint(1)`), `kind` its DATA_TYPE (`json` for a
    MariaDB JSON column: `json_checked`)."""
    return SourceColumn(name, column_type.lower(), "json" if json_checked else data_type.lower())


def json_checked(checks: Sequence[tuple[Any, ...]]) -> set[str]:
    """The columns whose check (MariaDB's `JSON_CHECKS_SQL` rows: name, clause) is exactly the
    `json_valid` MariaDB's JSON type gives a column (a check of more than that is the user's)."""
    return {str(name) for name, clause in checks
            if clause == "json_valid(`" + str(name).replace("`", "``") + "`)"}


def arrow_type(col: SourceColumn) -> pa.DataType:
    """The Arrow type a column is read as (see the module docstring)."""
    kind, sql = col.kind, col.sql_type
    unsigned = "unsigned" in sql
    if is_boolean(col):
        return pa.bool_()
    if kind in _INTEGERS:
        signed, wide = _INTEGERS[kind]
        return wide if unsigned else signed
    if kind == "decimal":
        match = _DECIMAL.match(sql)
        precision, scale = (int(match[1]), int(match[2] or 0)) if match else (10, 0)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if kind == "float":
        return pa.float32()
    if kind in ("double", "real", "double precision"):
        return pa.float64()
    if kind == "bit":
        width = _WIDTH.match(sql)
        return pa.decimal128(20, 0) if width and int(width[1]) == 64 else pa.int64()
    if kind == "date":
        return pa.date32()
    if kind == "datetime":
        return pa.timestamp("us")
    if kind == "timestamp":
        return pa.timestamp("us", "UTC")
    if kind in _BINARY:
        return pa.binary()
    return pa.string()


def is_boolean(col: SourceColumn) -> bool:
    return col.kind in ("tinyint", "bool", "boolean") and col.sql_type.startswith(("tinyint(1)", "bool")) \
        and "unsigned" not in col.sql_type


def is_binary(col: SourceColumn) -> bool:
    """Whether its values arrive as bytes (the others arrive as text)."""
    return col.kind in _BINARY


def select(col: SourceColumn, ref: str) -> str:
    """The expression whose text is this column's exact value."""
    if col.kind == "float":
        return f"CAST({ref} AS DOUBLE)"  # a FLOAT's own text has 6 digits; its DOUBLE text is exact
    if col.kind == "bit":
        return f"CAST({ref} AS UNSIGNED)"
    return ref


def parameter(col: SourceColumn) -> str:
    """The SQL of a position value (sent as text) compared with this column in its own type: a
    string compared with a number is compared as a double in MySQL, which rounds."""
    kind, sql = col.kind, col.sql_type
    if (kind in _INTEGERS and kind != "year") or kind == "bit":
        return "CAST(%s AS UNSIGNED)" if "unsigned" in sql or kind == "bit" else "CAST(%s AS SIGNED)"
    if kind == "decimal":
        match = _DECIMAL.match(sql)
        return f"CAST(%s AS DECIMAL({match[1]},{match[2] or 0}))" if match else "CAST(%s AS DECIMAL(65,30))"
    if kind in ("float", "double", "real"):
        return "CAST(%s AS DOUBLE)"
    if kind in ("datetime", "timestamp"):
        return "CAST(%s AS DATETIME(6))"
    if kind == "date":
        return "CAST(%s AS DATE)"
    if kind in _BINARY:
        return "UNHEX(%s)"
    return "%s"


def position_text(col: SourceColumn, value: object) -> str:
    """A value as a position holds it: its text (a binary column's bytes as hex)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex() if is_binary(col) else bytes(value).decode()
    return str(value)


def quote(name: str) -> str:
    """A MySQL identifier, backtick-quoted; `%` doubled (statements go with parameters)."""
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


# -- a query's columns, from the result's field descriptions -------------------------------------

_FIELD_KINDS = {0: "decimal", 246: "decimal", 1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double",
                7: "timestamp", 8: "bigint", 9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year",
                14: "date", 16: "bit", 245: "json", 255: "geometry"}
_BLOBS = {249: "tinyblob", 250: "mediumblob", 251: "longblob", 252: "blob", 253: "varbinary", 254: "binary",
          15: "varbinary"}
_UNSIGNED, _ENUM, _SET = 32, 256, 2048


def described(name: str, type_code: int, flags: int, length: int, scale: int, charsetnr: int) -> SourceColumn:
    """A column of a query's result, from the protocol's field description."""
    unsigned = " unsigned" if flags & _UNSIGNED else ""
    kind = _FIELD_KINDS.get(type_code)
    if kind == "decimal":
        precision = length - (1 if scale else 0) - (0 if unsigned else 1)
        return SourceColumn(name, f"decimal({precision},{scale}){unsigned}", kind)
    if kind in ("tinyint", "bit"):
        return SourceColumn(name, f"{kind}({length}){unsigned}", kind)
    if kind is not None:
        return SourceColumn(name, kind + unsigned, kind)
    if flags & _ENUM:
        return SourceColumn(name, "enum", "enum")
    if flags & _SET:
        return SourceColumn(name, "set", "set")
    if type_code in _BLOBS and charsetnr == 63:
        return SourceColumn(name, _BLOBS[type_code], _BLOBS[type_code])
    return SourceColumn(name, "text", "text")


# -- the rows of a read, into Arrow --------------------------------------------------------------

_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def decode(rows: Sequence[tuple[Any, ...]], columns: Sequence[SourceColumn], partition: str,
           position_at: Callable[[int], Position]) -> tuple[pa.Table, list[Reject]]:
    """The row tuples as one Arrow table of the columns' types, and the rows that do not fit
    (with `position_at(row index)` for their DLQ entries). The values go into one flat array and
    come out column by column (every width-th element): no per-row Python work."""
    width = len(columns)
    binary = any(is_binary(c) for c in columns)
    flat = pa.array(list(itertools.chain.from_iterable(rows)), pa.binary() if binary else pa.string())
    every = np.arange(0, len(flat), width, dtype=np.int64)
    return decode_columns([flat.take(every + j) for j in range(width)], columns, partition, position_at)


def decode_columns(raw: Sequence[pa.Array], columns: Sequence[SourceColumn], partition: str,
                   position_at: Callable[[int], Position]) -> tuple[pa.Table, list[Reject]]:
    """`decode` of the columns' server texts as arrays (string, or binary/large_binary: text
    columns among them are checked as UTF-8 when they are parsed)."""
    raw = [r.cast(pa.binary()) if is_binary(c) and not pa.types.is_binary(r.type) else r
           for r, c in zip(raw, columns, strict=True)]
    types = [arrow_type(c) for c in columns]
    bad: dict[int, tuple[str, str, str]] = {}
    parsed: list[pa.Array] = []
    for text, col, kind in zip(raw, columns, types, strict=True):
        try:
            parsed.append(_parse(text, col, kind))
        except _PARSE_ERRORS:
            _find_bad(text, col, kind, bad)
    logical = {c.name: c.logical for c in columns if c.logical}
    if not bad:
        return with_logical(pa.table({c.name: p for c, p in zip(columns, parsed, strict=True)}), logical), []
    rows = len(raw[0]) if raw else 0
    keep = pa.array([i for i in range(rows) if i not in bad], pa.int64())
    rejects = [Reject(partition, position_at(i), reason, _payload(raw, columns, i), rule="decode", column=name,
                      value=value) for i, (reason, name, value) in sorted(bad.items())]
    table = pa.table({c.name: _parse(r.take(keep), c, t) for r, c, t in zip(raw, columns, types, strict=True)})
    return with_logical(table, logical), rejects


def empty(columns: Sequence[SourceColumn]) -> pa.Table:
    """A read without rows, of the columns' types."""
    return with_logical(pa.table({c.name: pa.array([], arrow_type(c)) for c in columns}),
                        {c.name: c.logical for c in columns if c.logical})


def _parse(text: pa.Array, col: SourceColumn, kind: pa.DataType) -> pa.Array:
    """A column's server texts as `kind` (ArrowInvalid when one does not fit; text given as bytes
    is checked as UTF-8)."""
    if pa.types.is_binary(kind):
        return text
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    if pa.types.is_string(kind):
        return text
    if pa.types.is_boolean(kind):
        if not pc.all(pc.or_kleene(pc.is_in(text, pa.array(["0", "1"])), pc.is_null(text))).as_py():
            raise pa.ArrowInvalid("a TINYINT(1) read as a boolean holds 0 or 1")
        return pc.equal(text, "1")
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pc.cast(pc.cast(text, pa.timestamp("us")), kind)  # the session's zone is +00:00
    return pc.cast(text, kind)


def _find_bad(text: pa.Array, col: SourceColumn, kind: pa.DataType, bad: dict[int, tuple[str, str, str]]) -> None:
    """Note each row whose value in this column does not fit: (reason, column, value)."""
    for index, value in enumerate(text.to_pylist()):
        if index in bad or value is None:
            continue
        try:
            _parse(pa.array([value], text.type), col, kind)
        except _PARSE_ERRORS as exc:
            shown = _shown(value, col)
            bad[index] = (f"column {col.name!r}: value {shown[:80]!r} of {col.sql_type} does not fit {kind} "
                          f"({str(exc)[:120]})", col.name, shown)


def _payload(raw: Sequence[pa.Array], columns: Sequence[SourceColumn], index: int) -> str:
    import orjson

    return orjson.dumps({c.name: _shown(r[index].as_py(), c) for r, c in zip(raw, columns, strict=True)}).decode()


def _shown(value: Any, col: SourceColumn) -> Any:
    """A value as a reject shows it: binary as hex, text as text (bytes not UTF-8: with U+FFFD)."""
    if not isinstance(value, bytes):
        return value
    return value.hex() if is_binary(col) else value.decode("utf-8", "replace")
