"""The commit protocol for one prepared batch, as named steps inside one destination transaction:

    check the table is as prepared -> schema DDL and history -> deletes
    -> write rows (isolating refused ones) -> DLQ rows -> compare-and-set checkpoints

The caller opens the transaction, calls `commit_prepared`, and commits when it returns; any
exception rolls everything back, so rows, DLQ rows, schema changes and positions are stored
together or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from conduitd.config import ResourceConfig
from conduitd.core.evolution import write_migration
from conduitd.core.prepare import Prepared, refused_rejects
from conduitd.core.records import Batch, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import CommitResult, Transaction
from conduitd.dlq_sinks import DlqSink
from conduitd.errors import CheckpointConflict, ConduitError
from conduitd.runtime.isolate import write_isolating

log = logging.getLogger(__name__)
Reprepare = Callable[[dict[str, Column] | None], Awaitable[Prepared]]


async def commit_prepared(tx: Transaction, resource: ResourceConfig, prepared: Prepared,
                          reprepare: Reprepare, dlq: DlqSink | None = None) -> tuple[CommitResult, Prepared]:
    """Run every step inside `tx`; returns the result and the batch as finally prepared."""
    timings = prepared.batch.timings
    replaying = prepared.replaying
    if replaying and await tx.delete_rejects(resource.dlq_table, replaying) != len(replaying):
        raise ConduitError("some DLQ rows being replayed are gone (replayed elsewhere?): nothing was changed")
    prepared = await _as_the_table_is(tx, resource, prepared, reprepare)
    with timings.stage("schema"):
        if prepared.failure is not None:
            raise prepared.failure
        changes = await _apply_schema_changes(tx, resource, prepared)
    table, key = resource.table_name, resource.unique_key
    with timings.stage("write"):
        deleted = await tx.delete_rows(table, prepared.deletes) if prepared.deletes.num_rows else 0
        refused = (await write_isolating(tx, table, prepared.rows, prepared.columns, key, prepared.payload)).refused
        rejects = prepared.rejects + refused_rejects(prepared, refused)
        if rejects and dlq is None:
            await tx.write_rejects(resource.dlq_table, resource.name, rejects)
    timings.begin("commit")  # ended by the destination once COMMIT has returned
    await _advance_checkpoints(tx, resource.name, prepared.batch)
    if rejects and dlq is not None:
        await dlq.write(resource.name, rejects)  # durable before COMMIT: at least once
    result = CommitResult(
        rows_written=prepared.rows.num_rows - len(refused), rows_rejected=len(rejects), changes=tuple(changes),
        rows_deleted=deleted, rejected_by_rule=dict(Counter(r.rule for r in rejects)),
        quality=dict(prepared.quality_counts), warned=tuple(prepared.warned))
    return result, prepared


async def _as_the_table_is(tx: Transaction, resource: ResourceConfig, prepared: Prepared,
                           reprepare: Reprepare) -> Prepared:
    """The batch was prepared against the table as last seen; if it changed since (another
    writer's DDL, or this pipeline's previous batch), prepare it again against the table now."""
    live = await tx.table_columns(resource.table_name)
    if not prepared.known or live != prepared.live:
        replaying = prepared.replaying
        prepared = await reprepare(live)
        prepared.replaying = replaying
    return prepared


async def _apply_schema_changes(tx: Transaction, resource: ResourceConfig, prepared: Prepared) -> list[SchemaChange]:
    evolution = prepared.evolution
    if evolution is None or not evolution.changes:
        return []
    for change in evolution.changes:
        if change.applied and change.ddl:
            await tx.run_ddl(change.ddl)
            log.info("schema change applied: %s", change.ddl, extra={"pipeline": resource.name})
    pending = [c for c in evolution.changes if not c.applied]
    if pending:
        write_migration(resource, pending)
    await tx.record_changes(resource.name, evolution.changes)
    return list(evolution.changes)


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
