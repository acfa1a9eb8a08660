"""Types, DDL text and row encoding for DuckDB (pure; safe in worker threads; imports no driver).

Types, spelled as DuckDB reports them (so a live table compares equal to a planned one):
booleans BOOLEAN, integers BIGINT (unsigned 64-bit UBIGINT), floats FLOAT/DOUBLE (NaN and -0.0
are kept), decimals DECIMAL(p,s) up to 38 digits, timestamps TIMESTAMP WITH TIME ZONE (UTC) or
TIMESTAMP, dates DATE, binary BLOB, uuids UUID, nested values and JSON JSON, everything else
VARCHAR. Rows travel as the Arrow table itself: `encode` is the rows.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import pyarrow as pa

from conduitd.core.schema import Column, create_table_sql, extension_name

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")
_BY_NAME: dict[str, tuple[pa.DataType, bool]] = {
    "BOOLEAN": (pa.bool_(), False), "TINYINT": (pa.int8(), False), "SMALLINT": (pa.int16(), False),
    "INTEGER": (pa.int32(), False), "BIGINT": (pa.int64(), False), "UTINYINT": (pa.uint8(), False),
    "USMALLINT": (pa.uint16(), False), "UINTEGER": (pa.uint32(), False), "UBIGINT": (pa.uint64(), False),
    "FLOAT": (pa.float32(), False), "DOUBLE": (pa.float64(), False), "DATE": (pa.date32(), False),
    "TIMESTAMP": (pa.timestamp("us"), False), "TIMESTAMP WITH TIME ZONE": (pa.timestamp("us", tz="UTC"), False),
    "BLOB": (pa.binary(), False), "JSON": (pa.string(), True),
}
MAX_COLUMNS = 100_000
"""DuckDB documents no limit on a table's columns; conduitd stops a table growing past this."""


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded quotes are doubled, so nothing can escape it."""
    return '"' + identifier.replace('"', '""') + '"'


def column_from_catalog(name: str, data_type: str) -> Column:
    """The column of a live table from its `information_schema.columns.data_type`; types without
    an Arrow counterpart (HUGEINT, INTERVAL, LIST...) travel as text DuckDB casts on insert."""
    decimal = _DECIMAL.match(data_type)
    if decimal:
        return Column(name, pa.decimal128(int(decimal[1]), int(decimal[2])), data_type, native="DECIMAL")
    arrow, is_json = _BY_NAME.get(data_type, (pa.string(), False))
    return Column(name, arrow, data_type, json=is_json, native=data_type)


class DuckdbDialect:
    """See the module docstring."""

    max_identifier_bytes = None
    max_columns = MAX_COLUMNS

    def name_problem(self, name: str) -> str | None:
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        if not name:
            return "column name '' is empty: DuckDB names cannot be empty"
        if "\x00" in name:
            return f"column name {shown} contains a NUL character, which DuckDB names cannot hold"
        try:
            name.encode()
        except UnicodeEncodeError:
            return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
        return None

    def name_key(self, name: str) -> str:
        return name.translate(_ASCII_LOWER)  # DuckDB compares names ignoring ASCII case, quoted or not

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        extension = extension_name(arrow)
        if extension == "arrow.uuid":
            return Column(name, pa.string(), "UUID", native="UUID")
        if extension == "arrow.json" or pa.types.is_nested(arrow):
            return Column(name, pa.string(), "JSON", json=True, native="JSON")
        if pa.types.is_boolean(arrow):
            return Column(name, pa.bool_(), "BOOLEAN", native="BOOLEAN")
        if pa.types.is_uint64(arrow):
            return Column(name, pa.uint64(), "UBIGINT", native="UBIGINT")
        if pa.types.is_integer(arrow):
            return Column(name, pa.int64(), "BIGINT", native="BIGINT")
        if pa.types.is_float32(arrow):
            return Column(name, pa.float32(), "FLOAT", native="FLOAT")
        if pa.types.is_floating(arrow):
            return Column(name, pa.float64(), "DOUBLE", native="DOUBLE")
        if pa.types.is_decimal(arrow) and arrow.precision <= 38:
            return Column(name, pa.decimal128(arrow.precision, arrow.scale),
                          f"DECIMAL({arrow.precision},{arrow.scale})", native="DECIMAL")
        if pa.types.is_timestamp(arrow):
            if arrow.tz:
                return Column(name, pa.timestamp("us", tz="UTC"), "TIMESTAMP WITH TIME ZONE",
                              native="TIMESTAMP WITH TIME ZONE")
            return Column(name, pa.timestamp("us"), "TIMESTAMP", native="TIMESTAMP")
        if pa.types.is_date(arrow):
            return Column(name, pa.date32(), "DATE", native="DATE")
        if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
            return Column(name, pa.binary(), "BLOB", native="BLOB")
        return Column(name, pa.string(), "VARCHAR", native="VARCHAR")

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(quote(table), columns, key, quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column.name)} TYPE {column.sql}"

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # ALTER COLUMN ... TYPE gives the column the new type

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> pa.Table:
        return rows  # DuckDB reads the Arrow table where it lies: nothing to encode
