"""The DuckDB destination (see the package docstring): opening the file, the batch transaction,
and what a full refresh needs; everything else is the shared SQL bookkeeping (`SqlDestination`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import duckdb

from conduitd.config import PipelineConfig
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities
from conduitd.destinations.duckdb import CAPABILITIES, held
from conduitd.destinations.duckdb.dialect import DuckdbDialect, quote
from conduitd.destinations.duckdb.driver import DuckdbDriver
from conduitd.destinations.duckdb.errors import open_error
from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig
from conduitd.destinations.duckdb.transaction import DuckdbTransaction, table_columns
from conduitd.destinations.rollback import finish
from conduitd.destinations.sql import Bookkeeping, SqlDestination
from conduitd.destinations.sql.refresh import RefreshTransaction


class DuckdbDestination(SqlDestination):
    """See the package docstring."""

    dialect: DuckdbDialect

    def __init__(self, config: DuckdbDestinationConfig) -> None:
        self.config = config
        self.dialect = DuckdbDialect()
        self.driver = DuckdbDriver(config.path)
        self.books = Bookkeeping(self.driver)
        self._held: str | None = None
        """The path this destination's connection counts in `held`, while it is open."""

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def open(self, *, read_only: bool = False) -> None:
        self.driver.start()
        try:
            await self.driver.call(self._connect, read_only)
            if not read_only:
                await self.books.create_tables()
        except BaseException:
            await self.close()
            raise

    def _connect(self, read_only: bool) -> None:
        path = self.config.path
        # A database that does not exist yet is empty: look at an empty one rather than create it.
        target = ":memory:" if read_only and not os.path.exists(path) else path
        # A file this process writes is shared only with a connection configured like the writer's.
        writable = target != ":memory:" and (not read_only or held.is_held(path))
        try:
            conn = duckdb.connect(target, read_only=not writable and target != ":memory:")
        except duckdb.Error as exc:
            raise open_error(exc, path) from None
        try:
            conn.execute("SET TimeZone = 'UTC'")
            # A name that is no table must never find a Python variable of that name instead.
            conn.execute("SET python_enable_replacements = false")
        except BaseException:
            conn.close()
            raise
        self.driver.conn = conn
        if writable:
            held.hold(path)
            self._held = path

    async def close(self) -> None:
        await self.driver.stop()
        if self._held is not None:
            held.release(self._held)
            self._held = None

    def bookkeeping(self) -> Bookkeeping:
        return self.books

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []  # a file: whether it can be written is checked with the run's other outputs

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DuckdbTransaction]:
        await self.driver.run("BEGIN TRANSACTION")
        try:
            yield DuckdbTransaction(self.books, self.driver)
            await self.driver.run("COMMIT")
        except BaseException:
            await finish(self.driver.call(self._rollback))
            raise

    def _rollback(self) -> None:
        # No transaction may be open any more (a failed COMMIT ended it): then nothing to undo.
        with contextlib.suppress(duckdb.TransactionException):
            self.driver.conn.execute("ROLLBACK")

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await table_columns(self.driver, table)

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        # Columns and types; the key too, so upserts into the staging table find their conflict.
        live = await table_columns(self.driver, target) or {}
        key = await self.driver.fetch(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = current_schema() "
            "AND lower(table_name) = lower(?) AND constraint_type = 'PRIMARY KEY'", (target,))
        columns = list(live.values())
        await tx.run_ddl(self.dialect.create_table_ddl(staging, columns, list(key[0][0]) if key else []))

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        return f"ALTER TABLE {quote(old)} RENAME TO {quote(new)}"


__all__ = ["DuckdbDestination"]
