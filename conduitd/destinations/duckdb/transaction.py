"""The commit steps only DuckDB has: rows loaded from Arrow (the batch's table registered with the
connection, one `INSERT ... SELECT`, `ON CONFLICT ... DO UPDATE` for upserts), deletes joined
against the keys' Arrow table, DDL and table introspection; the bookkeeping steps are shared
(`SqlTransaction`). DuckDB has no savepoints: `savepoint` is never entered (the capability says so)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.duckdb.dialect import column_from_catalog, quote
from conduitd.destinations.duckdb.driver import DuckdbDriver, _changed
from conduitd.destinations.sql import Bookkeeping, SqlTransaction

ROWS = "conduitd_rows"
"""The name the batch's Arrow table has while a statement reads it (one statement at a time)."""


async def table_columns(driver: DuckdbDriver, table: str) -> dict[str, Column] | None:
    """The live table's columns by declared type, or None when it does not exist."""
    rows = await driver.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND lower(table_name) = lower(?) ORDER BY ordinal_position", (table,))
    if not rows:
        return None
    return {str(name): column_from_catalog(str(name), str(kind)) for name, kind in rows}


def load(driver: DuckdbDriver, sql: str, rows: pa.Table) -> int:
    """Run `sql`, which reads `rows` as the table `conduitd_rows`, on the connection's thread."""
    driver.conn.register(ROWS, rows)
    try:
        return _changed(driver.conn.execute(sql))
    finally:
        driver.conn.unregister(ROWS)


class DuckdbTransaction(SqlTransaction):
    """See the module docstring; one per transaction."""

    def __init__(self, books: Bookkeeping, driver: DuckdbDriver) -> None:
        super().__init__(books)
        self.duck = driver

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        raise NotImplementedError("DuckDB has no savepoints (Capabilities.savepoints is False)")
        yield  # pragma: no cover - makes this a generator

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await table_columns(self.duck, table)

    async def run_ddl(self, statement: str) -> None:
        await self.duck.run(statement)

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        data = payload if isinstance(payload, pa.Table) else rows
        names = [quote(c.name) for c in columns]
        picked = ", ".join(f"{ROWS}.{quote(data.column_names[i])}" for i in range(len(columns)))
        sql = f"INSERT INTO {quote(table)} ({', '.join(names)}) SELECT {picked} FROM {ROWS}"
        if key:
            updates = [n for c, n in zip(columns, names, strict=True) if c.name not in key]
            action = f"UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in updates)}" if updates else "NOTHING"
            sql += f" ON CONFLICT ({', '.join(quote(k) for k in key)}) DO {action}"
        await self.duck.call(load, self.duck, sql, data)

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # nothing DuckDB refuses is told before the write: a refused row fails the batch

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        target = quote(table)
        match = " AND ".join(f"{target}.{quote(n)} = {ROWS}.{quote(n)}" for n in keys.column_names)
        # EXISTS, not USING: a key repeated in `keys` must not count its row twice.
        sql = f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {ROWS} WHERE {match})"
        return await self.duck.call(load, self.duck, sql, keys)
