"""The connector contract kit (`conduitd.testing.contract`) run against the SQLite destination."""

from __future__ import annotations

import sqlite3
from typing import Any

from conduitd.config import SqliteDestinationConfig
from conduitd.destinations.base import Destination
from conduitd.destinations.sqlite import SqliteDestination, quote
from conduitd.testing.contract import DestinationContract


class TestSqliteContract(DestinationContract):
    def make_destination(self) -> Destination:
        return SqliteDestination(SqliteDestinationConfig(name="d", type="sqlite", path=str(self.tmp_path / "t.db")))

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.tmp_path / "t.db")
        try:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(f"SELECT * FROM {quote(table)}")]
        finally:
            db.close()
