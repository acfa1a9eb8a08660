"""Types, names and DDL text for ClickHouse (pure; safe in worker threads).

Types a new table gets, from the batch's Arrow types (every column Nullable, except the columns
of the unique key, which ClickHouse cannot sort on when Nullable):

    boolean                  Bool
    integers                 Int64 (uint64: UInt64)
    float32 / float64        Float64
    decimal(p,s)             Decimal(p,s) while p <= 38, else String (exact text)
    timestamp (any zone)     DateTime64(6, 'UTC')
    date                     Date32
    binary, text, other      String
    nested (lists, structs)  String holding the JSON text

Every table also has three columns of conduitd's own (`META`): the batch that wrote the row,
its version and a deleted flag. A table with a unique key is a
`ReplacingMergeTree(_conduitd_version, _conduitd_deleted) ORDER BY key`: an upsert is a newer
version of the key's row, a delete is a newer version flagged deleted, and `SELECT ... FINAL`
shows the last version of each key unless it is a deletion. A table without a key is a
`MergeTree ORDER BY tuple()` (appends).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from conduitd.core.schema import Column

BATCH, VERSION, DELETED = "_conduitd_batch", "_conduitd_version", "_conduitd_deleted"
META = (BATCH, VERSION, DELETED)
"""conduitd's own columns in every table it creates; never shown as the table's columns."""
MAX_COLUMNS = 10_000
_NULLABLE = re.compile(r"^Nullable\((.*)\)$")


def quote(identifier: str) -> str:
    """Quote an identifier with backquotes; backslashes and backquotes inside are escaped."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain a NUL character")
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: str) -> str:
    """A string literal: backslashes and single quotes escaped, so nothing can escape it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def name_problem(name: str) -> str | None:
    """Why ClickHouse cannot take `name` as a column (or a table), or None."""
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    if not name:
        return "column name '' is empty: ClickHouse names cannot be empty"
    if "\x00" in name:
        return f"column name {shown} contains a NUL character, which ClickHouse names cannot hold"
    try:
        name.encode()
    except UnicodeEncodeError:
        return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
    if name in META:
        return f"column name {shown} is one of conduitd's own columns in ClickHouse tables"
    return None


def column_for(name: str, arrow: pa.DataType) -> Column:
    """The column a new table gets for values of this Arrow type (see the module docstring)."""
    if pa.types.is_boolean(arrow):
        return Column(name, pa.bool_(), "Nullable(Bool)", native="Bool")
    if pa.types.is_uint64(arrow):
        return Column(name, pa.uint64(), "Nullable(UInt64)", native="UInt64")
    if pa.types.is_integer(arrow):
        return Column(name, pa.int64(), "Nullable(Int64)", native="Int64")
    if pa.types.is_floating(arrow):
        return Column(name, pa.float64(), "Nullable(Float64)", native="Float64")
    if pa.types.is_decimal(arrow) and 0 <= arrow.scale <= arrow.precision <= 38:
        kind = f"Decimal({arrow.precision}, {arrow.scale})"
        return Column(name, pa.decimal128(arrow.precision, arrow.scale), f"Nullable({kind})", native=kind)
    if pa.types.is_timestamp(arrow):
        return Column(name, pa.timestamp("us", tz="UTC"), "Nullable(DateTime64(6, 'UTC'))",
                      native="DateTime64(6, 'UTC')")
    if pa.types.is_date(arrow):
        return Column(name, pa.date32(), "Nullable(Date32)", native="Date32")
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return Column(name, pa.binary(), "Nullable(String)", native="String")
    if pa.types.is_nested(arrow):
        return Column(name, pa.string(), "Nullable(String)", json=True, native="String")
    return Column(name, pa.string(), "Nullable(String)", native="String")


def column_from_catalog(name: str, sql: str) -> Column:
    """The column of a live table from its ClickHouse type (`system.columns.type`)."""
    nullable = _NULLABLE.match(sql)
    base = nullable.group(1) if nullable else sql
    made = column_for(name, _arrow_of(base))
    return Column(name, made.arrow, sql, json=made.json, native=base)


def _arrow_of(base: str) -> pa.DataType:
    if base == "Bool":
        return pa.bool_()
    if base == "UInt64":
        return pa.uint64()
    if re.match(r"^U?Int(8|16|32|64)$", base):
        return pa.int64()
    if base.startswith("Float"):
        return pa.float64()
    decimal = re.match(r"^Decimal\((\d+),\s*(\d+)\)$", base)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    if base.startswith("DateTime"):
        return pa.timestamp("us", tz="UTC")
    if base.startswith("Date"):
        return pa.date32()
    return pa.string()


class ClickHouseDialect:
    """Types, names and DDL text for ClickHouse (pure; safe in worker threads); tables live in
    `database`."""

    max_identifier_bytes: int | None = None
    max_columns = MAX_COLUMNS

    def __init__(self, database: str) -> None:
        self.database = database

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(name)}"

    def name_problem(self, name: str) -> str | None:
        return name_problem(name)

    def name_key(self, name: str) -> str:
        return name  # names are case-sensitive and exact

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        return column_for(name, arrow)

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        parts = [f"{quote(c.name)} {_not_null(c.sql) if c.name in key else c.sql}" for c in columns]
        parts += [f"{BATCH} String", f"{VERSION} UInt64", f"{DELETED} UInt8 DEFAULT 0"]
        if key:
            engine = f"ReplacingMergeTree({VERSION}, {DELETED}) ORDER BY ({', '.join(quote(k) for k in key)})"
        else:
            engine = "MergeTree ORDER BY tuple()"
        return f"CREATE TABLE {self.table(table)} ({', '.join(parts)}) ENGINE = {engine}"

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {self.table(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return None  # values are cast to the live column's type; no widening in place

    def widening_holds(self, old: Column, new: Column) -> bool:
        return _not_null(old.sql) == _not_null(new.sql)

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> object:
        return None  # the rows go to ClickHouse as Arrow, built in the transaction


def _not_null(sql: str) -> str:
    nullable = _NULLABLE.match(sql)
    return nullable.group(1) if nullable else sql
