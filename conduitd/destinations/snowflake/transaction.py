"""The commit steps only Snowflake has, inside one explicit transaction: appends by a staged bulk
load, upserts by `MERGE`, deletes by key, DDL, table introspection. The bookkeeping steps are
shared (`SqlTransaction`).

Append: the rows are written to a Parquet file (`load`), `PUT` to the destination's temporary
stage under a name of their own, and `COPY INTO` the table from it (`PURGE` removes the file once
loaded). COPY is DML: it commits or rolls back with the transaction; a file of a rolled-back
attempt stays in the stage, which Snowflake drops with the session.

Upsert: the rows' keys are deleted (bound as parameters, `KEYS_PER_DELETE` at a time), then the
rows loaded as an append; rows repeating a key keep the last. Not a MERGE: fakesnow, which the
tests run against, runs a MERGE through a temporary table of another database, which DuckDB
refuses in any explicit transaction. The effect is a MERGE's: columns the batch does not carry
keep their values in replaced rows (read first, see `upsert`) and get their defaults in new ones.

DDL commits the open transaction in Snowflake (`Capabilities.transactional_ddl` is False, so the
commit protocol runs schema changes as their own step first): `run_ddl` commits, runs the
statement, and begins the next transaction, so what follows it still commits or rolls back as
one. A DDL statement after the transaction wrote rows would commit them half-way: it is refused
as transient instead, and the retry runs the schema step again first.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.snowflake import catalog, screen, upsert
from conduitd.destinations.snowflake.dialect import SnowflakeDialect, quote
from conduitd.destinations.snowflake.driver import SnowflakeDriver
from conduitd.destinations.snowflake.load import last_of_each_key, load_table, write_parquet
from conduitd.destinations.sql import Bookkeeping, SqlTransaction
from conduitd.errors import ConduitError, TransientError

KEYS_PER_DELETE = 1000


class SnowflakeTransaction(SqlTransaction):
    """See the module docstring; one per batch transaction. `stage`: the destination's stage."""

    def __init__(self, books: Bookkeeping, driver: SnowflakeDriver, dialect: SnowflakeDialect, stage: str) -> None:
        super().__init__(books)
        self.snowflake = driver
        self.dialect = dialect
        self.stage = stage
        self.wrote = False
        self._columns: dict[str, dict[str, Column] | None] = {}
        self._limits: dict[str, list[screen.Limits]] = {}
        """A table's catalog as read once in this transaction (an information_schema query costs a
        round trip and, on Snowflake, a metadata query each); DDL run here forgets it."""

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        if table not in self._columns:
            self._columns[table] = await catalog.table_columns(self.snowflake, table)
        found = self._columns[table]
        return None if found is None else dict(found)

    async def run_ddl(self, statement: str) -> None:
        if self.wrote:
            raise TransientError("the table changed between the schema step and the batch (another writer?): "
                                 "the batch is rolled back and retried")
        await self.snowflake.raw("COMMIT")  # what DDL would do itself: nothing is written yet
        self._columns.clear()
        self._limits.clear()
        try:
            await self.snowflake.raw(statement)
        finally:
            await self.snowflake.raw("BEGIN")

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self.wrote = True
        if not key:
            await self._copy(table, rows, columns)
            return
        rows = await asyncio.to_thread(last_of_each_key, rows, key)
        live = await self.table_columns(table) or {}
        carried = {c.name for c in columns}
        absent = [c for name, c in live.items() if name not in carried]
        if not absent:
            await self.delete_rows(table, rows.select(list(key)))
            await self._copy(table, rows, columns)
            return
        by_name = {c.name: c for c in columns}
        current = await upsert.current_values(self.snowflake, self.dialect.table(table), rows.select(list(key)),
                                              [by_name[k] for k in key], absent)
        matched, fresh = await asyncio.to_thread(upsert.split, rows, key, current)
        await self.delete_rows(table, rows.select(list(key)))
        if matched.num_rows:
            await self._copy(table, matched, [*columns, *absent])
        if fresh.num_rows:
            await self._copy(table, fresh, columns)

    async def _copy(self, table: str, rows: pa.Table, columns: Sequence[Column]) -> None:
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conduitd-snowflake-"))
        try:
            name = f"{uuid.uuid4().hex}.parquet"
            await asyncio.to_thread(write_parquet, load_table(rows, columns), str(folder / name))
            where = f"{self.stage}/{uuid.uuid4().hex}"
            await self.snowflake.raw(f"PUT 'file://{folder / name}' {where} AUTO_COMPRESS=FALSE OVERWRITE=TRUE")
            picks = ", ".join(f'$1:"c{i}"' for i in range(len(columns)))
            result = await self.snowflake.raw(
                f"COPY INTO {self.dialect.table(table)} ({', '.join(quote(c.name) for c in columns)}) "
                f"FROM (SELECT {picks} FROM {where}) FILE_FORMAT = (TYPE = PARQUET) PURGE = TRUE")
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        loaded = sum(int(r[3]) for r in result if len(r) > 3 and r[3] is not None)
        if loaded != rows.num_rows:
            raise ConduitError(f"COPY INTO {table!r} loaded {loaded} of {rows.num_rows} rows: {result!r}"[:2000])

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        """See `screen`: asked before the write (no savepoints to isolate a refused row after it)."""
        if table not in self._limits:
            self._limits[table] = await screen.column_limits(self.snowflake, table)
        limits = self._limits[table]
        return await asyncio.to_thread(screen.refused_rows, rows.select([c.name for c in columns]), limits)

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        self.wrote = True
        live = await self.table_columns(table) or {}
        columns = [live.get(name) or self.dialect.column_for(name, keys.schema.field(name).type)
                   for name in keys.column_names]
        cast = keys.cast(pa.schema([pa.field(c.name, c.arrow) for c in columns]))
        values = [tuple(r.values()) for r in (await asyncio.to_thread(load_table, cast, columns)).to_pylist()]
        match = "(" + ", ".join(quote(c.name) for c in columns) + ")"
        row = "(" + ", ".join(["?"] * len(columns)) + ")"
        target = self.dialect.table(table)
        deleted = 0
        for start in range(0, len(values), KEYS_PER_DELETE):
            part = values[start:start + KEYS_PER_DELETE]
            deleted += await self.snowflake.execute(
                f"DELETE FROM {target} WHERE {match} IN ({', '.join([row] * len(part))})", [v for r in part for v in r])
        return deleted

