"""The commit steps only SQLite has: its writes (one `executemany` on the connection's thread),
deletes, DDL and table introspection; the bookkeeping steps are shared (`SqlTransaction`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.base import RowsRefused
from conduitd.destinations.sql import Bookkeeping, SqlTransaction
from conduitd.destinations.sqlite.dialect import SqliteDialect, quote
from conduitd.destinations.sqlite.driver import SqliteDriver


async def table_columns(driver: SqliteDriver, table: str) -> dict[str, Column] | None:
    """The live table's columns by declared type, or None when it does not exist."""
    rows = await driver.fetch(f"PRAGMA table_info({quote(table)})")
    if not rows:
        return None
    columns = {}
    for _cid, name, declared, *_ in rows:
        kind = (declared or "").upper()
        if "INT" in kind:
            columns[name] = Column(name, pa.int64(), declared)
        elif any(k in kind for k in ("REAL", "FLOA", "DOUB")):
            columns[name] = Column(name, pa.float64(), declared)
        elif "BLOB" in kind:
            columns[name] = Column(name, pa.binary(), declared)
        else:
            columns[name] = Column(name, pa.string(), declared or "TEXT")
    return columns


class SqliteTransaction(SqlTransaction):
    """See the module docstring; one per transaction."""

    def __init__(self, books: Bookkeeping, driver: SqliteDriver, dialect: SqliteDialect) -> None:
        super().__init__(books)
        self.sqlite = driver
        self.dialect = dialect

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await table_columns(self.sqlite, table)

    async def run_ddl(self, statement: str) -> None:
        await self.sqlite.run(statement)

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        names = [quote(c.name) for c in columns]
        sql = f"INSERT INTO {quote(table)} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        updates = [n for c, n in zip(columns, names, strict=True) if c.name not in key]
        if key:
            target = ", ".join(quote(k) for k in key)
            action = f"UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in updates)}" if updates else "NOTHING"
            sql += f" ON CONFLICT ({target}) DO {action}"
        values = payload if isinstance(payload, list) else self.dialect.encode(rows, columns)
        sent = 0

        def counted() -> Iterator[tuple[Any, ...]]:
            # executemany binds and runs one parameter set at a time: when it stops, the last one
            # taken is the refused row and those before it were written.
            nonlocal sent
            for row in values:
                sent += 1
                yield row

        def insert() -> None:
            self.sqlite.conn.executemany(sql, counted())
        try:
            await self.sqlite.call(insert)
        except RowsRefused as refused:
            raise RowsRefused(refused.reason, sent - 1 if sent else None) from None

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # a refused row costs one executemany here, which names it: nothing to gain

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        match = " AND ".join(f"{quote(name)} = ?" for name in keys.column_names)
        values = list(zip(*(keys.column(i).to_pylist() for i in range(keys.num_columns)), strict=True))

        def delete() -> int:
            return self.sqlite.conn.executemany(f"DELETE FROM {quote(table)} WHERE {match}", values).rowcount
        return await self.sqlite.call(delete)
