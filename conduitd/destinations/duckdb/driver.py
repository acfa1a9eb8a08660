"""The DuckDB connection on its own thread (one connection, used by one task at a time), as the
`SqlDriver` the shared bookkeeping runs on. Every duckdb error is translated here (`errors`),
the one place all DuckDB work passes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb

from conduitd.destinations.duckdb.dialect import quote
from conduitd.destinations.duckdb.errors import translate
from conduitd.destinations.sql import BookkeepingTypes
from conduitd.destinations.sql.one_thread import OneThread

T = TypeVar("T")
IDS = "conduitd_ids"
"""The sequence numbering the rows of the DLQ, history and audit tables (DuckDB has no serial type)."""

TYPES = BookkeepingTypes(
    json="VARCHAR", json_param="{}", json_text="{}", timestamp="TIMESTAMP WITH TIME ZONE",
    now="current_timestamp", created_now="current_timestamp",
    serial_key=f"BIGINT PRIMARY KEY DEFAULT nextval('{IDS}')", boolean="BOOLEAN", text="VARCHAR",
    pipeline_text="VARCHAR", partition_text="VARCHAR", seconds_now="epoch(current_timestamp)")


def _changed(cursor: duckdb.DuckDBPyConnection) -> int:
    """Rows a statement changed: DuckDB answers a DML statement with one row holding the count."""
    rows = cursor.fetchall()
    return int(rows[0][0]) if rows and len(rows[0]) == 1 and isinstance(rows[0][0], int) else 0


class DuckdbDriver(OneThread[duckdb.DuckDBPyConnection]):
    """See the module docstring. `start` before use, `stop` after (harmless twice)."""

    types = TYPES
    store = "DuckDB"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the connection's thread; duckdb errors leave translated."""
        try:
            return await self._on_thread(fn, *args)
        except duckdb.Error as exc:
            raise translate(exc, self.path) from None

    # -- SqlDriver -----------------------------------------------------------------------------

    def param(self, n: int) -> str:
        return "?"

    def table(self, name: str) -> str:
        return quote(name)

    def text(self, value: str | None) -> str | None:
        return value

    def timestamp_param(self, value: datetime) -> Any:
        return value.astimezone(UTC)

    def now(self) -> Any:
        return datetime.now(UTC)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.call(lambda: _changed(self.conn.execute(sql, list(params))))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self.call(self.conn.executemany, sql, [list(r) for r in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return await self.call(lambda: list(self.conn.execute(sql, list(params)).fetchall()))

    async def run(self, *statements: str) -> None:
        def run_all() -> None:
            for statement in statements:
                self.conn.execute(statement)
        await self.call(run_all)

    async def table_exists(self, name: str) -> bool:
        return bool(await self.fetch("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                                     "AND lower(table_name) = lower(?)", (name,)))

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        # IF NOT EXISTS: no race, no other owner in a file; the sequence first, the tables use it.
        await self.run(f"CREATE SEQUENCE IF NOT EXISTS {quote(IDS)}", *statements.values())
