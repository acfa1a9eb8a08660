"""The commit steps only MySQL has, inside one InnoDB transaction: rows by multi-row INSERT
(the VALUES text built with Arrow, see `literals`), upserts with `ON DUPLICATE KEY UPDATE`,
deletes by key, DDL, table introspection. The bookkeeping steps are shared (`SqlTransaction`).

Upserts use `col = VALUES(col)`: the only form both servers take. MariaDB rejects MySQL 8's
`INSERT ... AS new ... UPDATE col = new.col`; MySQL 8.0.20+ deprecates VALUES() there (a
warning) but accepts it. ON DUPLICATE KEY UPDATE fires on ANY unique key of the table, not only
the pipeline's `unique_key`: a table with a second unique index merges on that one too.

DDL commits the open transaction implicitly in MySQL (`Capabilities.transactional_ddl` is False,
so the commit protocol runs schema changes as their own step first): `run_ddl` opens a new
transaction after it, so what follows it in the step still commits or rolls back as one. A DDL
statement arriving after the transaction wrote something (a concurrent writer changed the table
between the two steps) would commit that half-done work: it is refused as transient instead, and
the retry runs the schema step again first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.base import RowsRefused
from conduitd.destinations.mysql import catalog
from conduitd.destinations.mysql.dialect import MysqlDialect, quote
from conduitd.destinations.mysql.driver import MysqlDriver
from conduitd.destinations.mysql.errors import DUPLICATE_OBJECT, code_of
from conduitd.destinations.mysql.literals import Values, encode_values
from conduitd.destinations.sql import Bookkeeping, SqlTransaction
from conduitd.errors import TransientError

_KEYS_PER_DELETE = 1000


class MysqlTransaction(SqlTransaction):
    """See the module docstring; one per batch transaction."""

    def __init__(self, books: Bookkeeping, driver: MysqlDriver, dialect: MysqlDialect) -> None:
        super().__init__(books)
        self.mysql = driver
        self.dialect = dialect
        self.wrote = False

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await catalog.table_columns(self.mysql, table)

    async def run_ddl(self, statement: str) -> None:
        if self.wrote:
            raise TransientError("the table changed between the schema step and the batch (another writer?): "
                                 "the batch is rolled back and retried")

        async def run(cursor: Any) -> None:
            await cursor.execute(statement)
        try:
            await self.mysql.call(run)
        except Exception as exc:
            if code_of(exc.__cause__ or exc) in DUPLICATE_OBJECT:
                # Another replica changed the table at the same moment: prepare again against it.
                raise TransientError(f"concurrent schema change: {exc}") from None
            raise
        await self.mysql.run("START TRANSACTION")  # DDL committed the transaction: open the next one

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self.wrote = True
        values = payload if isinstance(payload, Values) and payload.rows == rows.num_rows else \
            await asyncio.to_thread(encode_values, rows, columns)
        names = [quote(c.name) for c in columns]
        head = f"INSERT INTO {self.dialect.table(table)} ({', '.join(names)}) VALUES ".encode()
        tail = b""
        if key:
            updates = [f"{n} = VALUES({n})" for c, n in zip(columns, names, strict=True) if c.name not in key]
            tail = (" ON DUPLICATE KEY UPDATE " + (", ".join(updates) or f"{quote(key[0])} = {quote(key[0])}")).encode()
        stop = min(values.refused, default=values.rows)
        for start, end, body in values.chunks(0, stop):
            async def run(cursor: Any, statement: bytes = head + body + tail) -> None:
                await cursor.execute(statement)
            try:
                await self.mysql.call(run)
            except RowsRefused as refused:
                # The rows of earlier statements were accepted; one row alone is the refused one.
                raise RowsRefused(refused.reason, start if end - start == 1 else None) from None
        if stop < values.rows:
            raise RowsRefused(values.refused[stop], stop)

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # refused rows are found by the write attempts (narrowed by halves)

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        self.wrote = True
        live = await self.table_columns(table) or {}
        columns = [live.get(name) or self.dialect.column_for(name, keys.schema.field(name).type)
                   for name in keys.column_names]
        encoded = await asyncio.to_thread(encode_values, keys.cast(pa.schema(
            [pa.field(c.name, c.arrow) for c in columns])), columns)
        if encoded.refused:
            raise RowsRefused(next(iter(encoded.refused.values())))
        match = f"({', '.join(quote(c.name) for c in columns)})"
        deleted = 0
        for _, _, body in encoded.chunks(0, encoded.rows):
            async def run(cursor: Any, statement: bytes = body) -> int:
                sql = f"DELETE FROM {self.dialect.table(table)} WHERE {match} IN (".encode() + statement + b")"
                return int(await cursor.execute(sql))
            deleted += await self.mysql.call(run)
        return deleted
