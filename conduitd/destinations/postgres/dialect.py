"""Types, DDL text and COPY encoding for PostgreSQL (pure; safe in worker threads).

Rows travel by COPY: binary (encoded from Arrow, vectorised) when every column's type has a
binary encoder, CSV otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv

from conduitd.core.schema import Column, create_table_sql
from conduitd.destinations.postgres import ddl
from conduitd.destinations.postgres.copy_binary import PG_BINARY_TYPES, encode_copy_binary


def binary_encodable(columns: Sequence[Column]) -> bool:
    return all(c.native in PG_BINARY_TYPES and (c.native != "numeric" or pa.types.is_decimal(c.arrow))
               for c in columns)


@dataclass(frozen=True)
class Payload:
    """Rows encoded for COPY: PostgreSQL's binary format, or CSV for types it has no encoder for."""

    data: bytes
    format: str


class PostgresDialect:
    """Types, DDL text and COPY encoding for PostgreSQL (pure; safe in worker threads)."""

    max_identifier_bytes = ddl.MAX_IDENTIFIER_BYTES
    max_columns = ddl.MAX_COLUMNS

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def name_problem(self, name: str) -> str | None:
        return ddl.name_problem(name)

    def name_key(self, name: str) -> str:
        return name  # quoted identifiers are compared exactly

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        return ddl.column_for(name, arrow)

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(ddl.qualified(self.schema, table), columns, key, ddl.quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {ddl.qualified(self.schema, table)} ADD COLUMN {ddl.quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        name = ddl.quote(column.name)
        return (f"ALTER TABLE {ddl.qualified(self.schema, table)} ALTER COLUMN {name} TYPE {column.sql} "
                f"USING {name}::{column.sql}")

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # ALTER COLUMN ... TYPE gives the column the new type

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> Payload:
        if binary_encodable(columns):
            return Payload(encode_copy_binary(rows, [c.native for c in columns]), "binary")
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        return Payload(buffer.getvalue(), "csv")
