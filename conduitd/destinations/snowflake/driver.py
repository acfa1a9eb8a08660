"""The Snowflake connection as the `SqlDriver` the shared bookkeeping runs on. The connector is
synchronous: every call runs in a worker thread (`asyncio.to_thread`), one at a time, on the
destination's one connection. Every connector error is translated here (see `errors`).

The connection is in autocommit: reads outside a batch see what others committed; a batch is an
explicit BEGIN ... COMMIT. Parameters are bound by the server (`qmark` style, `?`): a statement's
text is never formatted with values, so a `%` in a name is nothing special. Times are bound as
ISO 8601 text with their offset, which a TIMESTAMP_TZ column and comparison take exactly (a
datetime would be bound as TIMESTAMP_NTZ).

A call cancelled while its thread runs cannot stop the thread: the next call waits for it, and
a transaction it was part of is rolled back after it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from conduitd.destinations.snowflake.dialect import quote
from conduitd.destinations.snowflake.errors import translate
from conduitd.destinations.sql import BookkeepingTypes

T = TypeVar("T")

TYPES = BookkeepingTypes(
    json="VARCHAR", json_param="{}", json_text="{}", timestamp="TIMESTAMP_TZ(6)", now="CURRENT_TIMESTAMP()",
    created_now="CURRENT_TIMESTAMP()", serial_key="NUMBER(38,0) AUTOINCREMENT PRIMARY KEY", boolean="BOOLEAN",
    text="VARCHAR", pipeline_text="VARCHAR", partition_text="VARCHAR",
    keep_existing="",  # not used: the checkpoint's first write is a MERGE (`books`)
    quote='"', seconds_now="DATE_PART(EPOCH_MICROSECOND, CURRENT_TIMESTAMP()) / 1e6")


class SnowflakeDriver:
    """See the module docstring; one per destination, over one open connection."""

    types = TYPES

    def __init__(self, conn: Any, database: str, schema: str) -> None:
        self.conn = conn
        self.database = database
        self.schema = schema
        self._lock = threading.Lock()  # one statement at a time, even after a cancelled call

    def _blocking(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            cursor = self.conn.cursor()
            try:
                return work(cursor)
            finally:
                cursor.close()

    async def call(self, work: Callable[[Any], T]) -> T:
        """Run `work(cursor)` in a worker thread; translate errors."""
        try:
            return await asyncio.to_thread(self._blocking, work)
        except Exception as exc:
            translated = translate(exc)
            if translated is not exc:
                raise translated from exc
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- SqlDriver --------------------------------------------------------------------------------

    def param(self, n: int) -> str:
        return "?"

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(self.schema)}.{quote(name)}"

    def text(self, value: str | None) -> str | None:
        return value

    def timestamp_param(self, value: datetime) -> Any:
        return value.astimezone(UTC).isoformat()

    def now(self) -> Any:
        return datetime.now(UTC).isoformat()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        def run(cursor: Any) -> int:
            cursor.execute(sql, tuple(params) or None)
            return int(cursor.rowcount or 0)
        return await self.call(run)

    async def raw(self, sql: str) -> list[Sequence[Any]]:
        """Run one statement without parameters; its rows."""
        def run(cursor: Any) -> list[Sequence[Any]]:
            cursor.execute(sql)
            return list(cursor.fetchall())
        return await self.call(run)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run(cursor: Any) -> None:
            cursor.executemany(sql, [tuple(r) for r in rows])
        if rows:
            await self.call(run)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        def run(cursor: Any) -> list[Sequence[Any]]:
            cursor.execute(sql, tuple(params) or None)
            return list(cursor.fetchall())
        return await self.call(run)

    async def run(self, *statements: str) -> None:
        def run(cursor: Any) -> None:
            for statement in statements:
                cursor.execute(statement)
        await self.call(run)

    async def table_names(self) -> set[str]:
        rows = await self.fetch(f"SELECT table_name FROM {quote(self.database)}.information_schema.tables "
                                "WHERE table_schema = ?", (self.schema,))
        return {str(r[0]) for r in rows}

    async def table_exists(self, name: str) -> bool:
        return name in await self.table_names()

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        present = await self.table_names()
        missing = [sql for name, sql in statements.items() if name not in present]
        if missing:
            await self.run(*missing)  # IF NOT EXISTS: a replica creating it meanwhile is no error
