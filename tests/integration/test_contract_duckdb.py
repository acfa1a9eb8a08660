"""The connector contract kit (`conduitd.testing.contract`) run against the DuckDB destination.
DuckDB has no savepoints: the kit's refusal test checks that a refused row fails the batch and
leaves the table and the checkpoints as they were."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conduitd.destinations.base import Destination
from conduitd.testing.contract import DestinationContract

duckdb = pytest.importorskip("duckdb")  # the duckdb extra


def read_table(path: str, table: str) -> list[dict[str, Any]]:
    """Every row of `table`, read through a connection of its own (to the database instance the
    destination's connection shares when it is open in this process)."""
    conn = duckdb.connect(path)
    try:
        cursor = conn.execute('SELECT * FROM "{}"'.format(table.replace('"', '""')))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


class TestDuckdbContract(DestinationContract):
    def make_destination(self) -> Destination:
        from conduitd.destinations.duckdb.destination import DuckdbDestination
        from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig

        return DuckdbDestination(DuckdbDestinationConfig(name="d", type="duckdb", path=str(self.tmp_path / "t.duckdb")))

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(read_table, str(self.tmp_path / "t.duckdb"), table)
