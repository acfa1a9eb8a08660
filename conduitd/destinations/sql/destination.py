"""The `Destination` methods every SQL destination answers from the shared bookkeeping alone."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.destinations.base import CheckpointRow, DlqEntry, DlqFilter
from conduitd.destinations.sql.bookkeeping import Bookkeeping
from conduitd.destinations.sql.leases import LeaseBook


class SqlDestination(abc.ABC):
    """A base for SQL destinations: they give `bookkeeping()` (over their open connection) and
    inherit the DLQ table's setup, checkpoints, DLQ reads and the ping."""

    @abc.abstractmethod
    def bookkeeping(self) -> Bookkeeping:
        """The shared bookkeeping statements over this destination's open connection."""

    def leases(self) -> LeaseBook:
        """The lease table (`Capabilities.leases`), over this destination's open connection."""
        return LeaseBook(self.bookkeeping().driver)

    async def read_keys(self, table: str, columns: Sequence[str], after: Sequence[Any] | None,
                        limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` key values of `table` after `after`, in key order ([] when the table does
        not exist yet): the destination's side of a source's key scan (deletes)."""
        driver = self.bookkeeping().driver
        if not await driver.table_exists(table):
            return []
        q = driver.types.quote
        names = ", ".join(q + c.replace(q, q + q) + q for c in columns)
        where, params = "", list(after or ())
        if after is not None:
            where = f" WHERE ({names}) > ({', '.join(driver.param(n) for n in range(1, len(params) + 1))})"
        rows = await driver.fetch(f"SELECT {names} FROM {driver.table(table)}{where} ORDER BY {names} "
                                  f"LIMIT {int(limit)}", params)
        return [tuple(r) for r in rows]

    async def ping(self) -> None:
        await self.bookkeeping().driver.fetch("SELECT 1")

    async def setup(self, pipeline: PipelineConfig) -> None:
        if pipeline.dlq.type == "table":
            await self.bookkeeping().create_dlq_table(pipeline.dlq_table)

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return await self.bookkeeping().load_checkpoints(pipeline)

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        return await self.bookkeeping().list_checkpoints(pipeline)

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        return await self.bookkeeping().reset_checkpoints(pipeline, partition)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        return await self.bookkeeping().read_dlq(pipeline.dlq_table, pipeline.name, where)
