"""The SQLite connection on its own thread (sqlite3 objects are thread-bound), as the
`SqlDriver` the shared bookkeeping runs on. Every sqlite3 error is translated here, the one place
all SQLite work passes (see `errors`), except refused values, which the writer isolates."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from conduitd.destinations.base import RowsRefused
from conduitd.destinations.sql import BookkeepingTypes
from conduitd.destinations.sql.one_thread import OneThread
from conduitd.destinations.sqlite.dialect import quote
from conduitd.destinations.sqlite.errors import translate

T = TypeVar("T")

TYPES = BookkeepingTypes(
    json="TEXT", json_param="{}", json_text="{}", timestamp="TEXT",
    now="(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", created_now="(datetime('now'))",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT", boolean="INTEGER",
    seconds_now="((julianday('now') - 2440587.5) * 86400.0)")


class SqliteDriver(OneThread[sqlite3.Connection]):
    """See the module docstring. `start` before use, `stop` after (harmless twice)."""

    types = TYPES
    store = "SQLite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the connection's thread."""
        try:
            return await self._on_thread(fn, *args)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            # Refused values (a constraint, a trigger's RAISE): where rows are written, the
            # writer isolates them; at any other step the commit fails the batch.
            raise RowsRefused(f"SQLite refused the row: {exc}") from None
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    # -- SqlDriver -----------------------------------------------------------------------------

    def param(self, n: int) -> str:
        return "?"

    def table(self, name: str) -> str:
        return quote(name)

    def text(self, value: str | None) -> str | None:
        return value

    def timestamp_param(self, value: datetime) -> Any:
        # As datetime('now') writes created_at: UTC (a naive time is taken as local time).
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    def now(self) -> Any:
        return datetime.now().astimezone().isoformat()  # as conduitd has always written updated_at

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        # The statement's own rows (`rowcount`), not `total_changes`, which counts what
        # triggers wrote too: an audit trigger on the checkpoints must not fail the compare-and-set.
        return await self.call(lambda: self.conn.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.call(self.conn.executemany, sql, rows)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return await self.call(lambda: self.conn.execute(sql, params).fetchall())

    async def run(self, *statements: str) -> None:
        def run_all() -> None:
            for statement in statements:
                self.conn.execute(statement)
        await self.call(run_all)

    async def table_exists(self, name: str) -> bool:
        return bool(await self.fetch("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)))

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        await self.run(*statements.values())  # IF NOT EXISTS: no race, no other owner in a file
