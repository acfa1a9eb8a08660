"""The `Destination` methods every SQL destination answers from the shared bookkeeping alone."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.records import Position
from conduitd.destinations.base import CheckpointRow, DlqEntry, DlqFilter
from conduitd.destinations.control import AuditEntry, PendingChange, UsageRow
from conduitd.destinations.sql import refresh
from conduitd.destinations.sql.bookkeeping import Bookkeeping
from conduitd.destinations.sql.control import ControlBooks
from conduitd.destinations.sql.leases import LeaseBook
from conduitd.destinations.sql.refresh import RefreshTransaction


class SqlDestination(abc.ABC):
    """A base for SQL destinations: they give `bookkeeping()` (over their open connection) and
    inherit the DLQ table's setup, checkpoints, DLQ reads and the ping."""

    @abc.abstractmethod
    def bookkeeping(self) -> Bookkeeping:
        """The shared bookkeeping statements over this destination's open connection."""

    dialect: Dialect

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[RefreshTransaction]:
        """One batch transaction (see `conduitd.destinations.base.Destination.transaction`)."""

    @abc.abstractmethod
    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        """Create `staging` with `target`'s columns, types, defaults and keys (not its data)."""

    @abc.abstractmethod
    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        """The statement renaming table `old` to `new` (in the same schema or database)."""

    # -- mode full_refresh (see `conduitd.destinations.sql.refresh`) --------------------------

    def refresh_table(self, table: str) -> str:
        """The staging table a full refresh of `table` loads."""
        return refresh.staging_name(table, self.dialect.max_identifier_bytes)

    async def begin_refresh(self, pipeline: PipelineConfig, staging: str) -> None:
        """Start a full refresh run afresh: checkpoints reset, an empty staging table like the target."""
        async with self.transaction() as tx:
            await refresh.begin(self, tx, pipeline, staging)

    async def finish_refresh(self, pipeline: PipelineConfig, staging: str) -> int:
        """Swap the staging rows in atomically and reset the checkpoints; return the rows the table holds."""
        async with self.transaction() as tx:
            return await refresh.finish(self, tx, pipeline, staging)

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

    # -- the control plane (`Capabilities.control`; see `conduitd.destinations.sql.control`) ----

    async def read_usage(self, pipelines: Sequence[str], since: datetime | None = None) -> list[UsageRow]:
        return await ControlBooks(self.bookkeeping().driver).read_usage(pipelines, since)

    async def read_audit(self, projects: Sequence[str] | None, limit: int,
                         before_id: int | None = None) -> list[AuditEntry]:
        return await ControlBooks(self.bookkeeping().driver).read_audit(projects, limit, before_id)

    async def find_audit(self, actor: str, pipeline: str, key: str) -> AuditEntry | None:
        return await ControlBooks(self.bookkeeping().driver).find_audit(actor, pipeline, key)

    async def pending_changes(self, pipeline: str) -> list[PendingChange]:
        return await ControlBooks(self.bookkeeping().driver).pending_changes(pipeline)

    async def same_changes(self, pipeline: str, history_id: int) -> list[int]:
        return await ControlBooks(self.bookkeeping().driver).same_changes(pipeline, history_id)

    async def decision(self, pipeline: str, history_id: int) -> tuple[bool, str | None]:
        return await ControlBooks(self.bookkeeping().driver).decision(pipeline, history_id)

    async def read_dlq_page(self, dlq_table: str, pipeline: str, where: DlqFilter, *, after_id: int | None = None,
                            ids: Sequence[int] | None = None) -> list[DlqEntry]:
        return await ControlBooks(self.bookkeeping().driver).read_dlq(dlq_table, pipeline, where, after_id=after_id,
                                                                      ids=ids)
