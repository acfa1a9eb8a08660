"""The initial snapshot of a log-mode table: its rows in key order, read as text in one REPEATABLE
READ transaction with the filter that hands over to the log (`transactions.SnapshotFilter`). Each
block is one keyset `COPY (SELECT ...) TO STDOUT` in CSV, every column as its text (as pgoutput
sends values), parsed by Arrow in bulk: no Python object per value."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pyarrow as pa
import pyarrow.csv as pcsv

from conduitd.sources.pglog.transactions import SnapshotFilter
from conduitd.sources.tables.catalog import COLUMNS_SQL, PRIMARY_KEY_SQL, quote


async def table_shape(conn: asyncpg.Connection, name: str,
                      unique_key: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The table's columns ({name: SQL type}) and key (its primary key, else `unique_key`)."""
    types = {r[0]: r[1] for r in await conn.fetch(COLUMNS_SQL, name)}
    key = [r[0] for r in await conn.fetch(PRIMARY_KEY_SQL, name)] or list(unique_key)
    return types, key


def select_sql(name: str, types: dict[str, str], key: Sequence[str], after: Sequence[str] | None,
               limit: int | None = None) -> str:
    # The key is qualified: a bare name in ORDER BY means the output column, its text.
    columns = ", ".join(f"s.{quote(c)}::text AS {quote(c)}" for c in types)
    order = ", ".join(f"s.{quote(k)}" for k in key)
    where = ""
    if after is not None:
        bound = ", ".join(f"${i + 1}::text::{types[k]}" for i, k in enumerate(key))
        where = f" WHERE ({order}) > ({bound})"
    return f"SELECT {columns} FROM {name} AS s{where} ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")


def parse_text(data: bytes, names: Sequence[str]) -> pa.Table:
    """COPY's CSV as string columns: an unquoted empty field is NULL, a quoted one the empty text."""
    if not data:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    return pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(column_names=list(names), use_threads=False,
                                      block_size=max(1 << 16, min(1 << 30, len(data) + 1))),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True,
                                            quoted_strings_can_be_null=False, null_values=[""]))


async def read_snapshot(conn: asyncpg.Connection, name: str, unique_key: Sequence[str],
                        after: Sequence[str] | None, size: int,
                        ) -> AsyncIterator[tuple[SnapshotFilter, dict[str, str], list[str], pa.Table]]:
    """Blocks of up to `size` rows after the key `after` (texts; None: from the first) as text
    columns, each with the snapshot's filter, the column types and the key; the last block is
    shorter than `size` (possibly empty). The transaction stays open between blocks."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await conn.fetchval("SELECT pg_current_snapshot()::text")
        until = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        found = SnapshotFilter.parse(snapshot, until)
        types, key = await table_shape(conn, name, unique_key)
        while True:
            buffer = bytearray()

            async def collect(data: bytes, into: bytearray = buffer) -> None:
                into.extend(data)

            await conn.copy_from_query(select_sql(name, types, key, after, size), *(after or ()), output=collect,
                                       format="csv")
            block = parse_text(bytes(buffer), list(types))
            yield found, types, key, block
            if block.num_rows < size:
                return
            after = [block.column(k)[block.num_rows - 1].as_py() for k in key]
