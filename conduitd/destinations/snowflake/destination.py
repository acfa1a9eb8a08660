"""The Snowflake destination (see the package docstring): one connection, every batch one explicit
transaction on it. Tables are qualified with the database and schema everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.schema import Column
from conduitd.destinations.rollback import finish
from conduitd.destinations.snowflake import CAPABILITIES, catalog
from conduitd.destinations.snowflake.books import SnowflakeBookkeeping
from conduitd.destinations.snowflake.dialect import SnowflakeDialect, quote
from conduitd.destinations.snowflake.driver import SnowflakeDriver
from conduitd.destinations.snowflake.errors import unreachable
from conduitd.destinations.snowflake.settings import SnowflakeDestinationConfig, resolved
from conduitd.destinations.snowflake.transaction import SnowflakeTransaction
from conduitd.destinations.sql import Bookkeeping, SqlDestination
from conduitd.destinations.sql.refresh import RefreshTransaction
from conduitd.errors import ConduitError, TransientError

STAGE = "conduitd_load"
"""The temporary stage (of the session, in the destination's schema) load files are put in."""


def _connect_name(name: str) -> str:
    """A database or schema name as the connector's login takes it (unquoted unless it must be)."""
    return name if resolved(name) != name or name.isupper() else quote(name)


class SnowflakeDestination(SqlDestination):
    """See the module docstring."""

    dialect: SnowflakeDialect
    capabilities = CAPABILITIES

    def __init__(self, config: SnowflakeDestinationConfig) -> None:
        self.config = config
        self.dialect = SnowflakeDialect(config.database_name, config.schema_name)
        # A stage of this instance's own: a temporary stage is the session's in Snowflake, but two
        # sessions naming the same one clash in emulators (and a name per instance costs nothing).
        self.stage = (f"@{quote(config.database_name)}.{quote(config.schema_name)}."
                      f"{quote(f'{STAGE}_{secrets.token_hex(4)}')}")
        self._driver: SnowflakeDriver | None = None

    @property
    def driver(self) -> SnowflakeDriver:
        if self._driver is None:
            raise RuntimeError("the Snowflake destination is not open")
        return self._driver

    def bookkeeping(self) -> Bookkeeping:
        return SnowflakeBookkeeping(self.driver)

    def _login(self) -> Any:
        import snowflake.connector  # lazily: config loading and listing connectors work without it

        c = self.config
        options: dict[str, Any] = {
            "account": c.account, "user": c.user, "database": _connect_name(c.database_name),
            "schema": _connect_name(c.schema_name), "login_timeout": max(1, int(c.connect_timeout)),
            "application": "conduitd", "autocommit": True, "paramstyle": "qmark"}
        if c.password is not None:
            options["password"] = c.password.get_secret_value()
        options.update({k: v for k, v in (("warehouse", c.warehouse), ("role", c.role)) if v is not None})
        return snowflake.connector.connect(**options)

    async def open(self, *, read_only: bool = False) -> None:
        if self._driver is not None:
            raise RuntimeError("the Snowflake destination is already open")
        try:
            conn = await asyncio.to_thread(self._login)
        except Exception as exc:  # noqa: BLE001 - every cause is translated, none leaves
            raise unreachable(exc, self.config.where()) from None
        driver = SnowflakeDriver(conn, self.config.database_name, self.config.schema_name)
        try:
            if not read_only:
                await self._prepare(driver)
        except BaseException:
            await asyncio.to_thread(driver.close)
            raise
        self._driver = driver

    async def _prepare(self, driver: SnowflakeDriver) -> None:
        database, schema = quote(driver.database), quote(driver.schema)
        known = await driver.fetch(f"SELECT schema_name FROM {database}.information_schema.schemata "
                                   "WHERE schema_name = ?", (driver.schema,))
        if not known:
            await driver.raw(f"CREATE SCHEMA IF NOT EXISTS {database}.{schema}")
        await driver.raw(f"CREATE TEMPORARY STAGE IF NOT EXISTS {self.stage[1:]}")
        try:
            await SnowflakeBookkeeping(driver).create_tables()
        except Exception:  # noqa: BLE001 - tried once more: the second attempt's error is the one raised
            # Another session (a second pipeline, a replica) created them at the same moment: Snowflake's
            # CREATE ... IF NOT EXISTS is not atomic across sessions. They exist now; else this says why.
            await asyncio.sleep(0.2)
            try:
                await SnowflakeBookkeeping(driver).create_tables()
            except ConduitError:
                raise
            except Exception as exc:  # noqa: BLE001 - a refusal or an untranslated driver error while setting up
                raise TransientError(f"creating the bookkeeping tables: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await asyncio.to_thread(driver.close)

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []  # a missing privilege is reported by the first statement that needs it

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SnowflakeTransaction]:
        driver = self.driver
        await driver.raw("BEGIN")
        try:
            yield SnowflakeTransaction(self.bookkeeping(), driver, self.dialect, self.stage)
            await driver.raw("COMMIT")
        except BaseException:
            await finish(self._rollback(driver))
            raise

    @staticmethod
    async def _rollback(driver: SnowflakeDriver) -> None:
        with contextlib.suppress(TransientError):  # the session is gone: Snowflake rolled back itself
            await driver.raw("ROLLBACK")

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await catalog.table_columns(self.driver, table)

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        await tx.run_ddl(f"CREATE TABLE {tx.driver.table(staging)} LIKE {tx.driver.table(target)}")

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        return f"ALTER TABLE {tx.driver.table(old)} RENAME TO {tx.driver.table(new)}"
