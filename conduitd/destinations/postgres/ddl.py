"""PostgreSQL names and types: quoting, Arrow <-> PostgreSQL type mapping, reading a live table."""

from __future__ import annotations

import asyncpg
import pyarrow as pa

from conduitd.core.schema import Column, LiveColumns, extension_name


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded quotes are doubled, so nothing can escape it."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + identifier.replace('"', '""') + '"'


MAX_IDENTIFIER_BYTES = 63
"""NAMEDATALEN - 1: longer names are silently cut by the server."""
MAX_COLUMNS = 1600
"""MaxHeapAttributeNumber: a table holds at most this many columns."""
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})
"""Every table has these hidden columns: a column of the same name is refused (42701). (`oid`
has not been one since PostgreSQL 12.)"""


def name_problem(name: str) -> str | None:
    """Why PostgreSQL cannot take `name` as a column, or None (see `Dialect.name_problem`)."""
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    if not name:
        return "column name '' is empty: PostgreSQL names cannot be empty"
    if "\x00" in name:
        return f"column name {shown} contains a NUL character, which PostgreSQL names cannot hold"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
    if size > MAX_IDENTIFIER_BYTES:
        return f"column name {shown} is longer than the {MAX_IDENTIFIER_BYTES} bytes PostgreSQL allows"
    if name in SYSTEM_COLUMNS:
        return f"column name {shown} is a PostgreSQL system column"
    return None


def qualified(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


def column_for(name: str, arrow: pa.DataType) -> Column:
    """The column a new table gets for values of this Arrow type; a source's uuid and JSON columns
    (`pa.uuid()`, `pa.json_()`, see `schema.logical_type`) get `uuid` and `jsonb`, as text."""
    extension = extension_name(arrow)
    if extension == "arrow.uuid":
        return Column(name, pa.string(), "uuid", native="uuid")
    if extension == "arrow.json":
        return Column(name, pa.string(), "jsonb", json=True, native="jsonb")
    if pa.types.is_boolean(arrow):
        return Column(name, pa.bool_(), "boolean", native="bool")
    if pa.types.is_integer(arrow):
        if pa.types.is_uint64(arrow):
            return Column(name, pa.decimal128(20, 0), "numeric(20,0)", native="numeric")
        return Column(name, pa.int64(), "bigint", native="int8")
    if pa.types.is_float32(arrow):
        return Column(name, pa.float32(), "real", native="float4")
    if pa.types.is_floating(arrow):
        return Column(name, pa.float64(), "double precision", native="float8")
    if pa.types.is_decimal(arrow) and arrow.precision <= 38:
        return Column(name, pa.decimal128(arrow.precision, arrow.scale), f"numeric({arrow.precision},{arrow.scale})",
                      native="numeric")
    if pa.types.is_timestamp(arrow):
        if arrow.tz:
            return Column(name, pa.timestamp("us", tz="UTC"), "timestamptz", native="timestamptz")
        return Column(name, pa.timestamp("us"), "timestamp", native="timestamp")
    if pa.types.is_date(arrow):
        return Column(name, pa.date32(), "date", native="date")
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return Column(name, pa.binary(), "bytea", native="bytea")
    if pa.types.is_nested(arrow):
        return Column(name, pa.string(), "jsonb", json=True, native="jsonb")
    return Column(name, pa.string(), "text", native="text")


_BY_TYPNAME: dict[str, tuple[pa.DataType, bool]] = {
    "int2": (pa.int16(), False), "int4": (pa.int32(), False), "int8": (pa.int64(), False),
    "float4": (pa.float32(), False), "float8": (pa.float64(), False), "bool": (pa.bool_(), False),
    "date": (pa.date32(), False), "timestamp": (pa.timestamp("us"), False),
    "timestamptz": (pa.timestamp("us", tz="UTC"), False), "bytea": (pa.binary(), False),
    "json": (pa.string(), True), "jsonb": (pa.string(), True),
}


def column_from_catalog(name: str, typname: str, typmod: int, sql: str) -> Column:
    """The column of a live table; types without an Arrow counterpart travel as text."""
    if typname == "numeric" and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if precision <= 38:
            return Column(name, pa.decimal128(precision, scale), sql, native=typname)
    arrow, is_json = _BY_TYPNAME.get(typname, (pa.string(), False))
    return Column(name, arrow, sql, json=is_json, native=typname)


async def table_columns(conn: asyncpg.Connection, schema: str, table: str) -> dict[str, Column] | None:
    """Columns of a live table with their type names (typname), or None if it does not exist."""
    rows = await conn.fetch(
        """SELECT a.attname, a.attisdropped, t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod) AS sql
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_type t ON t.oid = a.atttypid  -- a dropped column has no type any more
           WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0
             AND c.relkind IN ('r', 'p')
           ORDER BY a.attnum""", schema, table)
    exists = rows or await conn.fetchval(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2", schema, table)
    if not exists:
        return None
    # A dropped column keeps its slot (attnum) against the 1,600-column limit until the table is rewritten.
    live = [r for r in rows if not r["attisdropped"]]
    return LiveColumns({r["attname"]: column_from_catalog(r["attname"], r["typname"], r["atttypmod"], r["sql"])
                        for r in live}, hidden=len(rows) - len(live))

