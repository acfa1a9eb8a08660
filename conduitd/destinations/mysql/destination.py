"""The MySQL/MariaDB destination (see the package docstring): one connection, every batch one
InnoDB transaction on it. Tables are qualified with the database everywhere, so the connection
names no default database, and `open` creates the database when it is missing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.schema import Column
from conduitd.destinations.mysql import CAPABILITIES, catalog
from conduitd.destinations.mysql.dialect import MysqlDialect, quote, uuid_type
from conduitd.destinations.mysql.driver import SQL_MODE, MysqlDriver, bookkeeping_types
from conduitd.destinations.mysql.errors import unreachable
from conduitd.destinations.mysql.settings import MysqlDestinationConfig
from conduitd.destinations.mysql.transaction import MysqlTransaction
from conduitd.destinations.rollback import finish
from conduitd.destinations.sql import Bookkeeping, SqlDestination
from conduitd.destinations.sql.refresh import RefreshTransaction

MARIADB_COLLATION = "utf8mb4_nopad_bin"  # binary and NO PAD: 'a' and 'a ' are two keys


class MysqlDestination(SqlDestination):
    """See the module docstring."""

    dialect: MysqlDialect

    capabilities = CAPABILITIES

    def __init__(self, config: MysqlDestinationConfig) -> None:
        self.config = config
        self.params = config.connect_params
        self.database = self.params.database or ""
        self.where = self.params.where()
        self.dialect = MysqlDialect(self.database)
        self._driver: MysqlDriver | None = None

    @property
    def driver(self) -> MysqlDriver:
        if self._driver is None:
            raise RuntimeError("the MySQL destination is not open")
        return self._driver

    def bookkeeping(self) -> Bookkeeping:
        return Bookkeeping(self.driver)

    async def _connect(self) -> Any:
        import asyncmy  # lazily: config loading and listing connectors work without the driver

        params, timeout = self.params, self.config.connect_timeout
        try:
            conn = await asyncio.wait_for(asyncmy.connect(
                host=params.host, port=params.port, user=params.user, password=params.password or "",
                connect_timeout=max(1, int(timeout)), autocommit=True, charset="utf8mb4",
                program_name="conduitd"), timeout + 1)
        except Exception as exc:  # noqa: BLE001 - every cause is translated, none leaves
            raise unreachable(exc, self.where, params.user) from None
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(f"SET SESSION sql_mode = '{SQL_MODE}', time_zone = '+00:00'")
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self, *, read_only: bool = False) -> None:
        if self._driver is not None:
            raise RuntimeError("the MySQL destination is already open")
        driver = MysqlDriver(self._connect, self.database, self.dialect.collation)
        try:
            version = str((await driver.fetch("SELECT VERSION()"))[0][0])
            self.dialect.uuid_sql = uuid_type(version)
            if "mariadb" in version.lower():
                self.dialect.collation = MARIADB_COLLATION
                driver.types = bookkeeping_types(MARIADB_COLLATION)
            if not read_only:
                if not await driver.fetch("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                                          (self.database,)):
                    await driver.run(f"CREATE DATABASE IF NOT EXISTS {quote(self.database).replace('%', '%%')} "
                                     f"CHARACTER SET utf8mb4 COLLATE {self.dialect.collation}")
                await Bookkeeping(driver).create_tables()
        except BaseException:
            await driver.close()
            raise
        self._driver = driver

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []  # a missing privilege is reported by the first statement that needs it

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MysqlTransaction]:
        driver = self.driver
        await driver.run("START TRANSACTION")
        driver.in_transaction = True
        try:
            yield MysqlTransaction(self.bookkeeping(), driver, self.dialect)
            await driver.run("COMMIT")
        except BaseException:
            await finish(self._rollback(driver))
            raise
        finally:
            driver.in_transaction = False

    @staticmethod
    async def _rollback(driver: MysqlDriver) -> None:
        # A statement cut off mid-reply leaves the connection out of step: dropping it rolls the
        # transaction back on the server, and the next transaction connects again.
        if driver.busy:
            driver.drop()
            return
        try:
            await driver.run("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone: the server rolled back itself
            driver.drop()

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await catalog.table_columns(self.driver, table)

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        await tx.run_ddl(f"CREATE TABLE {tx.driver.table(staging)} LIKE {tx.driver.table(target)}")

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        return f"RENAME TABLE {tx.driver.table(old)} TO {tx.driver.table(new)}"
