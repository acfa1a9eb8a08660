"""The commit protocol, read in one place. For each batch of a pipeline:

    prepare        rules, casts, schema plan, encoding: in a worker thread, ahead of the
                   commit when the destination can (`Capabilities.prepare_ahead`)
    BEGIN          destination.transaction()
      1. remove the DLQ rows being replayed (dlq replay)
      2. check the table is as prepared, else prepare again against it now
      3. schema: DDL and history
      4. deletes
      5. write rows, isolating the ones the destination refuses
      6. DLQ rows (the DLQ table)
      7. compare-and-set every partition's checkpoint, in one order for all writers
      8. external DLQ sink (file, topic): durable before COMMIT, at least once
    COMMIT         leaving the `async with` normally; any exception rolls everything back
    after COMMIT   migration files of `manual` schema evolution, the table's columns remembered

Rows, DLQ rows, schema changes and positions are stored together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conduitd.config import ResourceConfig
from conduitd.core.prepare import Prepared, prepare, refused_rejects
from conduitd.core.quality import Violation
from conduitd.core.records import Batch, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, Destination, RowsRefused, Transaction
from conduitd.dlq_sinks import DlqSink
from conduitd.errors import CheckpointConflict, ConduitError
from conduitd.runtime.isolate import write_isolating
from conduitd.runtime.migrations import write_migration

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one committed batch did."""

    rows_written: int
    dlq_rows: int
    changes: tuple[SchemaChange, ...] = ()
    rows_deleted: int = 0
    dlq_rows_by_rule: Mapping[str, int] = field(default_factory=dict)
    quality: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(rule, action) -> rows that broke it."""
    warned: tuple[Violation, ...] = ()
    """Rows written although a `warn` rule flagged them (for the log)."""


class Committer:
    """Prepares and commits the batches of one pipeline into its destination, one at a time."""

    def __init__(self, destination: Destination, resource: ResourceConfig, dlq: DlqSink | None = None) -> None:
        self.destination = destination
        self.resource = resource
        self.dlq = dlq
        self._live: dict[str, Column] | None = None
        self._live_known = False  # whether `_live` is the table as the last commit left it
        self._removed_warned: set[str] = set()

    async def prepare(self, batch: Batch, replaying: Sequence[int] = ()) -> Prepared:
        """The batch prepared against the table as last seen, when the destination lets it be
        prepared ahead and the table is known; otherwise left for the commit to prepare."""
        if self.destination.capabilities.prepare_ahead and self._live_known:
            prepared = await self._prepare(batch, self._live)
        else:
            prepared = Prepared(batch, live=None, known=False)
        prepared.replaying = tuple(replaying)
        return prepared

    async def commit(self, prepared: Prepared) -> CommitResult:
        """Run the protocol of the module docstring; raises CheckpointConflict when a stored
        position is not the batch's start (another writer owns it), TransientError when a retry
        may succeed, other ConduitErrors when not. Nothing is committed when it raises."""
        resource, batch = self.resource, prepared.batch
        try:
            async with self.destination.transaction() as tx:
                await _remove_replayed(tx, resource, prepared.replaying)
                prepared = await self._as_the_table_is(tx, prepared)
                with batch.timings.stage("schema"):
                    changes = await _apply_schema(tx, resource, prepared)
                with batch.timings.stage("write"):
                    deleted = await _delete_rows(tx, resource, prepared)
                    refused = await _write_rows(tx, resource, prepared, self.destination.capabilities)
                    rejects = prepared.rejects + refused_rejects(prepared, refused)
                    if rejects and self.dlq is None:
                        await tx.write_rejects(resource.dlq_table, resource.name, rejects)
                batch.timings.begin("commit")
                await _advance_checkpoints(tx, resource.name, batch)
                if rejects and self.dlq is not None:
                    await self.dlq.write(resource.name, rejects)
        except BaseException:
            self._live_known = False  # read the table again before the next batch is prepared
            raise
        batch.timings.end("commit")
        self._after_commit(prepared, changes)
        return CommitResult(
            rows_written=prepared.rows.num_rows - len(refused),
            dlq_rows=len(rejects), changes=tuple(changes), rows_deleted=deleted,
            dlq_rows_by_rule=dict(Counter(r.rule for r in rejects)), quality=dict(prepared.quality_counts),
            warned=tuple(prepared.warned))

    async def _prepare(self, batch: Batch, live: dict[str, Column] | None) -> Prepared:
        return await asyncio.to_thread(prepare, self.destination.dialect, self.resource, batch, live,
                                       removed_warned=self._removed_warned)

    async def _as_the_table_is(self, tx: Transaction, prepared: Prepared) -> Prepared:
        """The batch was prepared against the table as last seen; if it changed since (another
        writer's DDL, or this pipeline's previous batch), prepare it again against the table now."""
        live = await tx.table_columns(self.resource.table_name)
        if prepared.known and live == prepared.live:
            return prepared
        again = await self._prepare(prepared.batch, live)
        again.replaying = prepared.replaying
        return again

    def _after_commit(self, prepared: Prepared, changes: Sequence[SchemaChange]) -> None:
        pending = [c for c in changes if not c.applied]
        if pending:
            write_migration(self.resource, pending)
        # DDL changed the table: read it again before the next batch is prepared.
        self._live_known = not any(c.applied for c in changes)
        self._live = prepared.live


async def commit_batch(destination: Destination, resource: ResourceConfig, batch: Batch,
                       dlq: DlqSink | None = None, replaying: Sequence[int] = ()) -> CommitResult:
    """Prepare and commit one batch (dlq replay, tests, benchmarks)."""
    committer = Committer(destination, resource, dlq)
    return await committer.commit(await committer.prepare(batch, replaying))


# -- the steps ---------------------------------------------------------------------------------


async def _remove_replayed(tx: Transaction, resource: ResourceConfig, replaying: Sequence[int]) -> None:
    if replaying and await tx.delete_rejects(resource.dlq_table, replaying) != len(replaying):
        raise ConduitError("some DLQ rows being replayed are gone (replayed elsewhere?): nothing was changed")


async def _apply_schema(tx: Transaction, resource: ResourceConfig, prepared: Prepared) -> list[SchemaChange]:
    if prepared.failure is not None:
        raise prepared.failure  # a `fail` rule or a schema that must stop: nothing of this batch commits
    evolution = prepared.evolution
    if evolution is None or not evolution.changes:
        return []
    for change in evolution.changes:
        if change.applied and change.ddl:
            await tx.run_ddl(change.ddl)
            log.info("schema change applied: %s", change.ddl, extra={"pipeline": resource.name})
    await tx.record_changes(resource.name, evolution.changes)
    return list(evolution.changes)


async def _delete_rows(tx: Transaction, resource: ResourceConfig, prepared: Prepared) -> int:
    if not prepared.deletes.num_rows:
        return 0
    return await tx.delete_rows(resource.table_name, prepared.deletes)


async def _write_rows(tx: Transaction, resource: ResourceConfig, prepared: Prepared,
                      capabilities: Capabilities) -> list[tuple[int, str]]:
    """Write the rows; return the ones the destination refused (row in `prepared.rows`, reason).
    Without savepoints a refused row cannot be taken out of the transaction: the batch fails."""
    if not capabilities.savepoints:
        try:
            await tx.write_rows(resource.table_name, prepared.rows, prepared.columns, resource.unique_key,
                                prepared.payload)
        except RowsRefused as refused:
            raise ConduitError(f"the destination refused a row of the batch and cannot isolate it "
                               f"(it has no savepoints): {refused.reason}") from None
        return []
    isolation = await write_isolating(tx, resource.table_name, prepared.rows, prepared.columns,
                                      resource.unique_key, prepared.payload)
    return isolation.refused


async def _advance_checkpoints(tx: Transaction, pipeline: str, batch: Batch) -> None:
    # In one order for every writer: two writers of the same partitions (a --once run beside a
    # daemon, replicas during a rebalance) that locked the rows in their batches' orders could
    # deadlock each other.
    for partition, end in sorted(batch.end.items()):
        start = batch.start.get(partition)
        if not await tx.compare_and_set(pipeline, partition, start, end):
            raise CheckpointConflict(
                f"pipeline {pipeline!r}, partition {partition!r}: the stored position is no longer "
                f"{start!r}; another writer advanced it, this batch is rolled back")
