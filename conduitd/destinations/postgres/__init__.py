"""PostgreSQL destination: rows by COPY, DLQ rows and checkpoints in the same transaction.

One connection per pipeline; every batch is one transaction on it. The bookkeeping tables and
statements are the shared ones (`conduitd.destinations.sql`); this package holds the driver
glue (`driver`), the dialect, and the fast paths (`transaction`: COPY, staged upserts, screening
refused rows).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from conduitd.config import PipelineConfig, PostgresDestinationConfig
from conduitd.core.dsn import DsnError, parse_dsn
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities
from conduitd.destinations.postgres import ddl
from conduitd.destinations.postgres.dialect import PostgresDialect
from conduitd.destinations.postgres.driver import PostgresDriver
from conduitd.destinations.postgres.errors import translate, unreachable
from conduitd.destinations.postgres.privileges import write_problems
from conduitd.destinations.postgres.transaction import PostgresTransaction
from conduitd.destinations.rollback import finish
from conduitd.destinations.sql import CHECKPOINTS, HISTORY, Bookkeeping, SqlDestination
from conduitd.destinations.sql.refresh import RefreshTransaction

CAPABILITIES = Capabilities(control=True, transactional_ddl=True, savepoints=True, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True, leases=True)


def describe_dsn(dsn: str) -> str:
    """host:port/db of a DSN (either form), without user or password: safe for logs and errors."""
    try:
        return parse_dsn(dsn).where()
    except DsnError:
        return "(a DSN that cannot be parsed)"


class PostgresDestination(SqlDestination):
    """See the module docstring."""

    dialect: PostgresDialect

    capabilities = CAPABILITIES

    def __init__(self, config: PostgresDestinationConfig) -> None:
        self.config = config
        self.schema = config.db_schema
        self._driver: PostgresDriver | None = None
        self.params = config.connect_params
        self.where = self.params.where()
        self.dialect = PostgresDialect(self.schema)

    @property
    def driver(self) -> PostgresDriver:
        if self._driver is None:
            raise RuntimeError("the PostgreSQL destination is not open")
        return self._driver

    def bookkeeping(self) -> Bookkeeping:
        return Bookkeeping(self.driver)

    @property
    def conn(self) -> asyncpg.Connection:
        return self.driver.conn

    async def open(self, *, read_only: bool = False) -> None:
        if self._driver is not None:
            raise RuntimeError("the PostgreSQL destination is already open")
        try:
            # Connect parameters parsed by conduitd: asyncpg never parses the user's DSN (its
            # parser's errors quote the password), and the password travels as a keyword.
            conn = await asyncpg.connect(
                **self.params.connect_kwargs(), timeout=self.params.connect_timeout or self.config.connect_timeout,
                server_settings={"application_name": f"conduitd {self.schema}"[:63]})
        except (TimeoutError, OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise unreachable(exc, self.where) from None
        self._driver = PostgresDriver(conn, self.schema)
        if read_only:
            return
        if not await self.driver.fetch("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", (self.schema,)):
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
            # the schema is there, which a role confined to its schema does not have.
            await self.driver.create_if_missing(f"CREATE SCHEMA IF NOT EXISTS {ddl.quote(self.schema)}")
        await self.bookkeeping().create_tables()

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            try:
                await asyncio.wait_for(driver.conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                driver.conn.terminate()

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        tables = [CHECKPOINTS, HISTORY, pipeline.table_name]
        if pipeline.dlq.type == "table":
            tables.append(pipeline.dlq_table)
        try:
            return await write_problems(self.conn, self.schema, tables)
        except Exception as exc:
            raise translate(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        conn = self.conn
        try:
            begun = conn.transaction()
            await begun.start()
        except Exception as exc:
            raise translate(exc) from exc
        try:
            # Deferred constraints (a DEFERRABLE INITIALLY DEFERRED foreign key, a deferred
            # constraint trigger) would refuse a row only at COMMIT, where no row can be told
            # apart any more and the whole batch would fail on every run: check them at each
            # statement, so a refused row is found and dead-lettered like any other.
            await self.driver.run("SET CONSTRAINTS ALL IMMEDIATE")
            yield PostgresTransaction(self.bookkeeping(), self.driver)
            await begun.commit()
        except BaseException as exc:
            await finish(self._rollback(begun))
            if isinstance(exc, Exception):
                raise translate(exc) from exc
            raise

    @staticmethod
    async def _rollback(begun: asyncpg.transaction.Transaction) -> None:
        # When the connection is gone, the server rolled the transaction back itself.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await begun.rollback()

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        try:
            return await ddl.table_columns(self.conn, self.schema, table)
        except Exception as exc:
            raise translate(exc) from exc

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        # Indexes too: an upsert into the staging table needs the unique key's index.
        await tx.run_ddl(f"CREATE TABLE {ddl.qualified(self.schema, staging)} (LIKE "
                         f"{ddl.qualified(self.schema, target)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                         "INCLUDING INDEXES)")

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        return f"ALTER TABLE {ddl.qualified(self.schema, old)} RENAME TO {ddl.quote(new)}"
