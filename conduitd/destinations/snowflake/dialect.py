"""Types, names and DDL text for Snowflake (pure; safe in worker threads).

Types a new table gets, from the batch's Arrow types:

    boolean                  BOOLEAN
    integers                 NUMBER(38,0) (Snowflake's INTEGER; uint64 fits too)
    float32 / float64        FLOAT (double precision; NaN and infinities are kept)
    decimal(p,s)             NUMBER(p,s) while p <= 38, else VARCHAR (exact text)
    timestamp (any zone)     TIMESTAMP_TZ(6), in UTC
    date                     DATE
    binary                   BINARY
    nested (lists, structs)  VARCHAR holding the JSON text
    text, anything else      VARCHAR

Identifiers are always quoted with double quotes (a quote inside is doubled), so they are exact:
a column `orders` is "orders", not ORDERS, and is queried as such. Snowflake keeps at most 255
characters of a name. Quoted names compare exactly (`name_key` is the name itself). A primary key
is declared for the table's readers; Snowflake does not enforce it (the `MERGE` keeps keys unique).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from conduitd.core.schema import Column, create_table_sql, extension_name

MAX_IDENTIFIER_CHARS = 255
MAX_COLUMNS = 10_000  # no documented hard limit; a row must fit 16 MB


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded double quotes are doubled, so nothing can escape it."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + identifier.replace('"', '""') + '"'


def name_problem(name: str) -> str | None:
    """Why Snowflake cannot take `name` as a column (or a table), or None."""
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    if not name:
        return "column name '' is empty: Snowflake names cannot be empty"
    if "\x00" in name:
        return f"column name {shown} contains a NUL character, which Snowflake names cannot hold"
    try:
        name.encode()
    except UnicodeEncodeError:
        return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
    if len(name) > MAX_IDENTIFIER_CHARS:
        return f"column name {shown} is longer than the {MAX_IDENTIFIER_CHARS} characters Snowflake allows"
    return None


def column_for(name: str, arrow: pa.DataType) -> Column:
    """The column a new table gets for values of this Arrow type (see the module docstring)."""
    if extension_name(arrow) in ("arrow.uuid", "arrow.json"):
        return Column(name, pa.string(), "VARCHAR", json=extension_name(arrow) == "arrow.json", native="text")
    if pa.types.is_boolean(arrow):
        return Column(name, pa.bool_(), "BOOLEAN", native="boolean")
    if pa.types.is_integer(arrow):
        if pa.types.is_uint64(arrow):
            return Column(name, pa.decimal128(20, 0), "NUMBER(38,0)", native="number")
        return Column(name, pa.int64(), "NUMBER(38,0)", native="number")
    if pa.types.is_floating(arrow):
        return Column(name, pa.float64(), "FLOAT", native="float")
    if pa.types.is_decimal(arrow) and 0 <= arrow.scale <= arrow.precision <= 38:
        return Column(name, pa.decimal128(arrow.precision, arrow.scale), f"NUMBER({arrow.precision},{arrow.scale})",
                      native="number")
    if pa.types.is_timestamp(arrow):
        return Column(name, pa.timestamp("us", tz="UTC"), "TIMESTAMP_TZ(6)", native="timestamp_tz")
    if pa.types.is_date(arrow):
        return Column(name, pa.date32(), "DATE", native="date")
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return Column(name, pa.binary(), "BINARY", native="binary")
    if pa.types.is_nested(arrow):
        return Column(name, pa.string(), "VARCHAR", json=True, native="text")
    return Column(name, pa.string(), "VARCHAR", native="text")


class SnowflakeDialect:
    """Types, names and DDL text for Snowflake (pure; safe in worker threads); tables live in
    `database`.`schema` (both as Snowflake resolved them)."""

    max_identifier_bytes = MAX_IDENTIFIER_CHARS * 4  # checked in characters by name_problem
    max_columns = MAX_COLUMNS

    def __init__(self, database: str, schema: str) -> None:
        self.database = database
        self.schema = schema

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(self.schema)}.{quote(name)}"

    def name_problem(self, name: str) -> str | None:
        return name_problem(name)

    def name_key(self, name: str) -> str:
        return name  # quoted names are exact

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        return column_for(name, arrow)

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(self.table(table), columns, key, quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {self.table(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return None  # Snowflake changes a column's type only to a longer text or a wider precision

    def widening_holds(self, old: Column, new: Column) -> bool:
        return old.sql == new.sql

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> object:
        return None  # the load file is written in the transaction's worker thread
