"""A synchronous view of the test database, for tests that are themselves synchronous (they
sleep, send signals and kill processes while the daemon works)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg


class Db:
    """One asyncpg connection driven by a private event loop."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.schema = schema
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(dsn))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.conn.close())
        finally:
            self.loop.close()

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self.loop.run_until_complete(self.conn.fetch(sql, *args))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self.conn.fetchval(sql, *args))

    def count(self, table: str = "events") -> int:
        try:
            return int(self.fetchval(f"SELECT count(*) FROM {self.table(table)}"))
        except asyncpg.UndefinedTableError:
            return 0

    def ids(self, table: str = "events") -> list[int]:
        return [r[0] for r in self.fetch(f"SELECT id FROM {self.table(table)}")]

    def dlq_payloads(self, table: str = "events_dlq") -> list[str]:
        try:
            return sorted(r[0] for r in self.fetch(f"SELECT payload FROM {self.table(table)}"))
        except asyncpg.UndefinedTableError:
            return []

    def checkpoints(self, pipeline: str = "events") -> dict[str, int]:
        """partition -> committed offset."""
        try:
            rows = self.fetch(f"SELECT partition, position::text FROM {self.table('conduitd_checkpoints')} "
                              "WHERE pipeline = $1", pipeline)
        except asyncpg.UndefinedTableError:
            return {}
        return {r[0]: int(json.loads(r[1])["offset"]) for r in rows}

