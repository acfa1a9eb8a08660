"""The asyncpg connection as the `SqlDriver` the shared bookkeeping runs on; every asyncpg error
is translated into conduitd's tree here (see `errors`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from conduitd.destinations.postgres import ddl
from conduitd.destinations.postgres.errors import translate
from conduitd.destinations.sql import BookkeepingTypes
from conduitd.errors import TransientError

T = TypeVar("T")
_WATCH_SECONDS = 0.5

TYPES = BookkeepingTypes(
    json="jsonb", json_param="{}::jsonb", json_text="{}::text", timestamp="timestamptz", now="now()",
    created_now="now()", serial_key="bigserial PRIMARY KEY", boolean="boolean")


def _changed(status: str) -> int:
    """Rows a command changed, from its status ("INSERT 0 1", "UPDATE 3", "DELETE 0")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDriver:
    """See the module docstring; one per connection, inside or outside a transaction."""

    types = TYPES

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def param(self, n: int) -> str:
        return f"${n}"

    def table(self, name: str) -> str:
        return ddl.qualified(self.schema, name)

    def text(self, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL, which a field name or a value from data may: escaped as JSON does.
        return None if value is None else value.replace("\x00", "\\u0000")

    def timestamp_param(self, value: datetime) -> Any:
        return value

    def now(self) -> Any:
        return datetime.now(UTC)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return _changed(str(await self.conn.execute(sql, *params)))
        except Exception as exc:
            raise translate(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self.watched(self.conn.executemany(sql, rows))
        except Exception as exc:
            raise translate(exc) from exc

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        try:
            return list(await self.conn.fetch(sql, *params))
        except Exception as exc:
            raise translate(exc) from exc

    async def run(self, *statements: str) -> None:
        try:
            await self.conn.execute("; ".join(statements))  # one round trip
        except Exception as exc:
            raise translate(exc) from exc

    async def table_exists(self, name: str) -> bool:
        rows = await self.fetch(
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2", (self.schema, name))
        return bool(rows)

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        present = {r[0] for r in await self.fetch(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = ANY($2::text[])", (self.schema, list(statements)))}
        missing = [sql for name, sql in statements.items() if name not in present]
        if missing:
            await self.create_if_missing(";".join(missing))

    async def create_if_missing(self, statements: str) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements. Replicas starting together race on them: the
        loser's IF NOT EXISTS saw no object, then collides with the one just committed (a unique
        violation on the catalog, or "type ... already exists"); once more, it sees it and passes."""
        for attempt in range(3):
            try:
                await self.conn.execute(statements)
                return
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateObjectError, asyncpg.DuplicateTableError,
                    asyncpg.DuplicateSchemaError) as exc:
                if attempt == 2:
                    raise translate(exc) from exc
            except Exception as exc:
                raise translate(exc) from exc

    async def watched(self, operation: Awaitable[T]) -> T:
        """Await a COPY or an executemany. asyncpg waits for the socket to drain between their
        messages and is never woken if the connection drops meanwhile (the server stopped mid-way):
        watch for that, so the write fails (and is retried) instead of waiting forever."""
        task = asyncio.ensure_future(operation)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_WATCH_SECONDS)
                if not task.done() and self.conn.is_closed():
                    raise TransientError("PostgreSQL connection lost mid-write")
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: what the caller sees is the error raised above
