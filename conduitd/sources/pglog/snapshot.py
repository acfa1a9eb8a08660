"""The initial snapshot of a log-mode table: its rows in key order, read as text in one REPEATABLE
READ transaction with the filter that hands over to the log (`transactions.SnapshotFilter`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from conduitd.sources.pglog.transactions import SnapshotFilter
from conduitd.sources.tables.catalog import COLUMNS_SQL, PRIMARY_KEY_SQL, quote


async def table_shape(conn: asyncpg.Connection, name: str,
                      unique_key: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The table's columns ({name: SQL type}) and key (its primary key, else `unique_key`)."""
    types = {r[0]: r[1] for r in await conn.fetch(COLUMNS_SQL, name)}
    key = [r[0] for r in await conn.fetch(PRIMARY_KEY_SQL, name)] or list(unique_key)
    return types, key


def select_sql(name: str, types: dict[str, str], key: Sequence[str], after: Sequence[str] | None) -> str:
    # The key is qualified: a bare name in ORDER BY means the output column, its text.
    columns = ", ".join(f"s.{quote(c)}::text AS {quote(c)}" for c in types)
    order = ", ".join(f"s.{quote(k)}" for k in key)
    where = ""
    if after is not None:
        bound = ", ".join(f"${i + 1}::text::{types[k]}" for i, k in enumerate(key))
        where = f" WHERE ({order}) > ({bound})"
    return f"SELECT {columns} FROM {name} AS s{where} ORDER BY {order}"


async def read_snapshot(conn: asyncpg.Connection, name: str, unique_key: Sequence[str],
                        after: Sequence[str] | None, size: int,
                        ) -> AsyncIterator[tuple[SnapshotFilter, dict[str, str], list[str], list[dict[str, Any]]]]:
    """Blocks of up to `size` rows after the key `after` (texts; None: from the first), each with
    the snapshot's filter, the column types and the key; the last block is shorter than `size`
    (possibly empty). The transaction stays open between blocks."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await conn.fetchval("SELECT pg_current_snapshot()::text")
        until = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        found = SnapshotFilter.parse(snapshot, until)
        types, key = await table_shape(conn, name, unique_key)
        cursor = await conn.cursor(select_sql(name, types, key, after), *(after or ()))
        while True:
            records = await cursor.fetch(size)
            yield found, types, key, [dict(r.items()) for r in records]
            if len(records) < size:
                return
