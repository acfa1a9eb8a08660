"""What a PostgreSQL relation's columns are, and how each is read: the select expression whose
text COPY writes and the Arrow type that text is parsed into (exact: no float for a numeric, no
naive time for a timestamptz)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

_INTEGERS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
_FLOATS = {"real": pa.float32(), "double precision": pa.float64()}
_OWN_TEXT = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "text", "character varying",
             "uuid", "date", "timestamp with time zone", "timestamp without time zone", "time with time zone",
             "time without time zone", "interval", "json", "jsonb"}
"""Types whose output function is their cast to text (as `format_type` names them, without typmod)."""
_TYPMOD = re.compile(r"\(\d+(,\d+)?\)")


@dataclass(frozen=True, slots=True)
class SourceColumn:
    name: str
    sql_type: str
    """As `format_type` writes it: `numeric(12,2)`, `timestamp with time zone`, `text[]`..."""
    kind: str
    """pg_type.typtype / typcategory: `e` for enums, `A` for arrays, else the category letter."""

    @property
    def arrow(self) -> pa.DataType:
        return arrow_type(self.sql_type, self.kind)

    @property
    def logical(self) -> str:
        """`uuid` or `json` for a column read as text whose values are uuids or JSON documents
        (PostgreSQL's uuid, json, jsonb; MySQL's JSON and MariaDB's UUID, whose DATA_TYPE is the
        kind), else '': the destination gives it its uuid or JSON type (`schema.LOGICAL`)."""
        if self.kind == "A":
            return ""
        if self.sql_type == "uuid" or self.kind == "uuid":
            return "uuid"
        if self.sql_type in ("json", "jsonb") or self.kind == "json":
            return "json"
        return ""

    def select(self, quoted: str) -> str:
        """The expression that writes this column's value as text Arrow parses exactly."""
        if self.kind == "A" or self.sql_type in ("json", "jsonb"):
            return f"to_json({quoted})::text" if self.kind == "A" else f"{quoted}::text"
        if self.sql_type == "bytea":
            return f"encode({quoted}, 'hex')"
        return quoted

    @property
    def copies_as_text(self) -> bool:
        """Whether the text COPY writes of this column is exactly its `::text` cast, so that a row's
        own value is its position text. Not so for `character(n)` and `boolean` (their casts to
        text trim and spell out), nor for what `select` rewrites (bytea, arrays)."""
        return self.kind == "e" or (self.kind != "A" and _TYPMOD.sub("", self.sql_type) in _OWN_TEXT)


def arrow_type(sql_type: str, kind: str = "") -> pa.DataType:
    """The Arrow type a column of `sql_type` is read as; text for what Arrow cannot hold exactly."""
    if sql_type in _INTEGERS:
        return _INTEGERS[sql_type]
    if sql_type in _FLOATS:
        return _FLOATS[sql_type]
    if sql_type == "boolean":
        return pa.bool_()
    if sql_type == "date":
        return pa.date32()
    if sql_type.startswith("timestamp"):
        return pa.timestamp("us", "UTC") if "with time zone" in sql_type else pa.timestamp("us")
    if sql_type.startswith("numeric(") and kind != "A":
        precision, _, scale = sql_type[len("numeric("):-1].partition(",")
        p, s = int(precision), int(scale or 0)
        return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    if sql_type == "bytea":
        return pa.binary()
    return pa.string()  # text, varchar, uuid, json, enums, arrays as JSON, numeric without precision...


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation(source_table: str, default_schema: str) -> tuple[str, str]:
    """(schema, table) of a `source_table` (`schema.table` or a bare table in `default_schema`)."""
    schema, dot, table = source_table.partition(".")
    return (schema, table) if dot and table else (default_schema, source_table)


COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typtype = 'e' THEN 'e' ELSE t.typcategory::text END
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""

PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_catalog.pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::regclass AND i.indisprimary
ORDER BY k.n"""
