"""Types, DDL text and row encoding for SQLite (pure; safe in worker threads).

Types: integers INTEGER, floats REAL, binary BLOB, everything else TEXT (timestamps as ISO-8601
text, decimals as exact text, nested values as JSON).
"""

from __future__ import annotations

import sqlite3
import string
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.core.schema import Column, create_table_sql
from conduitd.destinations.base import RowsRefused


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded quotes are doubled, so nothing can escape it."""
    return '"' + identifier.replace('"', '""') + '"'


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _column_limit() -> int:
    """SQLITE_MAX_COLUMN as this SQLite library was built (2,000 by default)."""
    probe = sqlite3.connect(":memory:")
    try:
        return int(probe.getlimit(sqlite3.SQLITE_LIMIT_COLUMN))
    finally:
        probe.close()


class SqliteDialect:
    """Types, DDL text and row encoding for SQLite (pure; safe in worker threads)."""

    max_identifier_bytes = None
    max_columns = _column_limit()

    def name_problem(self, name: str) -> str | None:
        # SQLite takes any other name, "" included; `rowid`, `oid` and `_rowid_` become ordinary
        # columns (they then hide the row id, which conduitd never reads).
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        if "\x00" in name:
            return f"column name {shown} contains a NUL character, which SQLite names cannot hold"
        try:
            name.encode()
        except UnicodeEncodeError:
            return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
        return None

    def name_key(self, name: str) -> str:
        return name.translate(_ASCII_LOWER)  # SQLite compares names ignoring ASCII case only

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        # SQLite's INTEGER is int64: a uint64 column (values up to 2**64-1) is kept as the exact
        # integer's text, since an integer-looking text in an INTEGER column would become a REAL.
        # SQLite has no boolean: `true`/`false` are kept as that text, as read (not 1/0).
        if pa.types.is_integer(arrow) and not pa.types.is_uint64(arrow):
            return Column(name, pa.int64(), "INTEGER")
        if pa.types.is_floating(arrow):
            return Column(name, pa.float64(), "REAL")
        if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
            return Column(name, pa.binary(), "BLOB")
        return Column(name, pa.string(), "TEXT", json=pa.types.is_nested(arrow))

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(quote(table), columns, key, quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return None  # SQLite keeps any value in any column: a wider value needs no DDL

    def widening_holds(self, old: Column, new: Column) -> bool:
        # Without DDL the column keeps its affinity: text such as "18446744073709551615" written
        # to an INTEGER or REAL column is converted to a (rounded) REAL. Numbers into numbers hold.
        return not (old.sql in ("INTEGER", "REAL") and new.sql == "TEXT")

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> list[tuple[Any, ...]]:
        # A REAL column keeps no negative zero (-0.0 reads back as 0.0, in any form it is sent:
        # SQLite writes integral reals as integers) and no NaN (it becomes NULL): such a row is
        # refused when the rows are sent, naming it, so the writer dead-letters it alone.
        encoded = list(zip(*(rows.column(i).to_pylist() for i in range(rows.num_columns)), strict=True))
        refused: dict[int, str] = {}
        for index, column in enumerate(columns):
            if pa.types.is_floating(column.arrow) and pa.types.is_floating(rows.schema.field(index).type):
                for row, reason in _not_kept(rows.column(index), column).items():
                    refused.setdefault(row, reason)
        return _Encoded(encoded, refused) if refused else encoded


def _not_kept(values: pa.ChunkedArray, column: Column) -> dict[int, str]:
    """Rows whose float a REAL column would alter: -0.0 (read back as 0.0) and NaN (NULL)."""
    floats = np.asarray(values.fill_null(1.0).to_numpy(), dtype=np.float64)  # null is kept: not asked
    found = {int(row): f"column {column.name!r}: SQLite cannot keep -0.0 (a negative zero) in a {column.sql} "
                       "column: it would read back as 0.0"
             for row in np.flatnonzero((floats == 0) & np.signbit(floats))}
    found.update({int(row): f"column {column.name!r}: SQLite cannot keep NaN in a {column.sql} column: it "
                            "would read back as NULL" for row in np.flatnonzero(np.isnan(floats))})
    return found


class _Encoded(list[tuple[Any, ...]]):
    """Encoded rows, some of which SQLite would store altered: iterating them (as `executemany`
    does) raises RowsRefused at the first such row, naming it; the rows before it were sent."""

    def __init__(self, rows: list[tuple[Any, ...]], refused: dict[int, str]) -> None:
        super().__init__(rows)
        self.refused = refused

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for index, row in enumerate(super().__iter__()):
            if index in self.refused:
                raise RowsRefused(self.refused[index], index)
            yield row
