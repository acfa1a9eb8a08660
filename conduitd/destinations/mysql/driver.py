"""The asyncmy connection as the `SqlDriver` the shared bookkeeping runs on. Every asyncmy error
is translated here (see `errors`). The session is set once per connection:

    autocommit=1          reads outside a batch see what others committed (no stale snapshot);
                          a batch is an explicit START TRANSACTION ... COMMIT
    sql_mode              STRICT_ALL_TABLES (a value that does not fit is refused, never cut or
                          altered), NO_ZERO_DATE, ERROR_FOR_DIVISION_BY_ZERO, NO_ENGINE_SUBSTITUTION;
                          backslash escapes stay on (the literals use them)
    time_zone '+00:00'    DATETIME values and CURRENT_TIMESTAMP are UTC
    utf8mb4               every Unicode character

A statement interrupted half-way (a cancelled task) leaves the protocol mid-reply: the
connection is then dropped and made again before the next transaction or bookkeeping call, never
inside a transaction. The server notices a dropped client only when the statement ends, and holds
its locks until then: the new connection kills the old one's session first (KILL CONNECTION
rolls back what it had open), so the next batch does not wait on the locks of the last.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from conduitd.destinations.mysql.dialect import quote
from conduitd.destinations.mysql.errors import translate
from conduitd.destinations.sql import BookkeepingTypes
from conduitd.errors import TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)
SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


def bookkeeping_types(collation: str) -> BookkeepingTypes:
    return BookkeepingTypes(
        json="LONGTEXT", json_param="{}", json_text="{}", timestamp="DATETIME(6)", now="CURRENT_TIMESTAMP(6)",
        created_now="CURRENT_TIMESTAMP(6)", serial_key="BIGINT AUTO_INCREMENT PRIMARY KEY", boolean="BOOLEAN",
        text="LONGTEXT", pipeline_text="VARCHAR(128)", partition_text="VARCHAR(630)",
        keep_existing="ON DUPLICATE KEY UPDATE {} = {}".format(quote("pipeline"), quote("pipeline")),
        quote="`", table_options=f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}",
        seconds_now="UNIX_TIMESTAMP(NOW(6))")


class MysqlDriver:
    """See the module docstring; one per destination. `connect` is the coroutine function that
    makes a connection with the session set."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], database: str, collation: str) -> None:
        self._connect = connect
        self.database = database
        self.types = bookkeeping_types(collation)
        self._conn: Any = None
        self.in_transaction = False
        self._busy = False  # a statement was sent and its reply not read yet
        self._orphan: int | None = None  # the server session of a dropped connection, to kill

    # -- the connection --------------------------------------------------------------------------

    async def connection(self) -> Any:
        """The live connection; made again if it was dropped, unless inside a transaction."""
        if self._conn is not None and not self._busy:
            return self._conn
        if self.in_transaction:
            raise TransientError("MySQL connection lost inside the transaction")
        self.drop()
        self._conn = await self._connect()
        orphan, self._orphan = self._orphan, None
        if orphan is not None:
            try:
                async with self._conn.cursor() as cursor:
                    await cursor.execute(f"KILL CONNECTION {int(orphan)}")
            except Exception:  # noqa: BLE001 - it ended by itself meanwhile (unknown thread id: the server answered)
                log.debug("the session of a dropped MySQL connection had ended already")
        return self._conn

    @property
    def busy(self) -> bool:
        """A statement was sent and its reply not read (it was cancelled or the connection failed)."""
        return self._busy or self._conn is None

    def drop(self) -> None:
        """Close the connection without a word to the server (which rolls back what is open)."""
        conn, self._conn, self._busy = self._conn, None, False
        if conn is not None:
            try:
                self._orphan = int(conn.thread_id())
            except (AttributeError, TypeError, IndexError):
                self._orphan = None
            conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._busy:
            conn.close()
            return
        try:
            await conn.ensure_closed()
        except Exception:  # noqa: BLE001 - the server is gone already: nothing to say goodbye to
            conn.close()

    async def call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(cursor)`; translate errors; a cancellation mid-statement drops the connection."""
        conn = await self.connection()
        self._busy = True
        try:
            async with conn.cursor() as cursor:
                result = await work(cursor)
        except BaseException as exc:
            if isinstance(exc, Exception):
                translated = translate(exc)
                if not isinstance(translated, TransientError):
                    self._busy = False  # the server answered: the connection is in step
                if translated is not exc:
                    raise translated from exc
            raise
        self._busy = False
        return result

    # -- SqlDriver --------------------------------------------------------------------------------

    def param(self, n: int) -> str:
        return "%s"

    def table(self, name: str) -> str:
        # Every statement is sent with its parameters (maybe none), so a '%' in a name is doubled.
        return f"{quote(self.database)}.{quote(name)}".replace("%", "%%")

    def text(self, value: str | None) -> str | None:
        return value

    def timestamp_param(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None)  # created_at is UTC (time_zone +00:00)

    def now(self) -> Any:
        return datetime.now(UTC).replace(tzinfo=None)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async def run(cursor: Any) -> int:
            return int(await cursor.execute(sql, tuple(params)))
        return await self.call(run)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async def run(cursor: Any) -> None:
            await cursor.executemany(sql, [tuple(r) for r in rows])
        if rows:
            await self.call(run)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async def run(cursor: Any) -> list[Sequence[Any]]:
            await cursor.execute(sql, tuple(params))
            return list(await cursor.fetchall())
        return await self.call(run)

    async def run(self, *statements: str) -> None:
        async def run(cursor: Any) -> None:
            for statement in statements:
                await cursor.execute(statement, ())
        await self.call(run)

    async def table_exists(self, name: str) -> bool:
        rows = await self.fetch("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                "AND TABLE_NAME = %s", (self.database, name))
        return any(r[0] == name for r in rows)  # the comparison above may ignore case

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        present = {r[0] for r in await self.fetch(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (self.database,))}
        missing = [sql for name, sql in statements.items() if name not in present]
        if missing:
            await self.run(*missing)  # IF NOT EXISTS: a replica creating it meanwhile is no error
