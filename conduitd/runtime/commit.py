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
      7. compare-and-set every partition's checkpoint, in one order for all writers, and add the
         batch to the pipeline's usage of the hour (where the destination keeps it)
      8. external DLQ sink (file, topic): durable before COMMIT, at least once
    COMMIT         leaving the `async with` normally; any exception rolls everything back
    after COMMIT   migration files of `manual` schema evolution, the table's columns remembered

Rows, DLQ rows, schema changes and positions are stored together or not at all.

`mode: full_refresh` runs this same protocol into a staging table (`staging_pipeline`); the
pipeline begins and finishes the run around it through the destination's `Refreshes` methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.prepare import Prepared, prepare, refused_rejects
from conduitd.core.quality import Violation
from conduitd.core.records import Batch, Reject, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, Destination, RowsRefused, Transaction
from conduitd.destinations.control import ControlTransaction
from conduitd.dlq_sinks import DlqSink
from conduitd.errors import CheckpointConflict, ConduitError, ConfigError
from conduitd.oserrors import os_error_text
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


@runtime_checkable
class Refreshes(Protocol):
    """A destination that can run `mode: full_refresh` (the SQL ones, see
    `conduitd.destinations.sql.refresh`; files, see `conduitd.destinations.files.refresh`). The
    pipeline calls `begin_refresh` before the source reads anything, commits the run's batches into
    `refresh_table(table)` with the usual protocol, and calls `finish_refresh` once the source was
    read to its end; a run that ends otherwise leaves the table as it was, and the next run's
    `begin_refresh` starts over."""

    def refresh_table(self, table: str) -> str:
        """The staging table the run's batches go to."""

    async def begin_refresh(self, pipeline: PipelineConfig, staging: str) -> None:
        """Reset the pipeline's checkpoints and create an empty staging table like the table."""

    async def finish_refresh(self, pipeline: PipelineConfig, staging: str) -> int:
        """Replace the table's rows with the staging rows and reset the checkpoints, in one
        transaction (readers see the old rows or the new ones); return the rows it holds."""


def written_as(pipeline: PipelineConfig, table: str | None = None) -> PipelineConfig:
    """How a batch of the pipeline is written: a `full_refresh` batch is appended (upserted on
    `unique_key` when there is one) to `table` (the staging table during a run; the table itself
    for a batch outside a run, such as a DLQ replay). The DLQ table stays the pipeline's."""
    if pipeline.mode != "full_refresh":
        return pipeline
    return pipeline.model_copy(update={
        "mode": "upsert" if pipeline.unique_key else "append", "table": table or pipeline.table_name,
        "dlq": pipeline.dlq.model_copy(update={"table": pipeline.dlq_table})})


def refresh_problem(pipeline: PipelineConfig, destination: Destination, *, once: bool) -> str | None:
    """Why a `full_refresh` pipeline cannot run here: in daemon mode, or on a destination without
    `Refreshes`; None when it can (or the pipeline is not a full refresh)."""
    if pipeline.mode != "full_refresh":
        return None
    if not once:
        return (f"resources.{pipeline.name}.mode: `full_refresh` replaces the table with everything the source "
                "holds, once per run: run it with `--once` (`conduit run`), or use mode `append` or `upsert` in "
                "daemon mode")
    if not isinstance(destination, Refreshes):
        return (f"resources.{pipeline.name}.mode: destination {pipeline.destination!r} cannot replace a table's "
                "contents atomically: `full_refresh` needs a PostgreSQL, MySQL/MariaDB, SQLite, DuckDB or file "
                "destination")
    return None


class Committer:
    """Prepares and commits the batches of one pipeline into its destination, one at a time."""

    def __init__(self, destination: Destination, pipeline: PipelineConfig, dlq: DlqSink | None = None) -> None:
        self.destination = destination
        self.pipeline = written_as(pipeline)
        self.dlq = dlq
        self._live: dict[str, Column] | None = None
        self._live_known = False  # whether `_live` is the table as the last commit left it
        self._removed_warned: set[str] = set()
        self._outlived: list[SchemaChange] = []  # see `_apply_schema`

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
        pipeline, batch = self.pipeline, prepared.batch
        capabilities = self.destination.capabilities
        problem = capability_problem(pipeline, capabilities)
        if problem is not None:
            raise ConfigError(problem)
        changes: list[SchemaChange] = []
        try:
            if not capabilities.transactional_ddl and _may_change_schema(prepared):
                # DDL would outlive a rolled-back batch, and its history row would not: the schema
                # changes and their history commit first, on their own.
                async with self.destination.transaction() as tx:
                    prepared = await self._as_the_table_is(tx, prepared)
                    with batch.timings.stage("schema"):
                        changes = await _apply_schema(tx, pipeline, prepared, outlived=self._outlived)
                self._outlived.clear()
            async with self.destination.transaction() as tx:
                await _remove_replayed(tx, pipeline, prepared.replaying)
                prepared = await self._as_the_table_is(tx, prepared)
                with batch.timings.stage("schema"):
                    changes += await _apply_schema(tx, pipeline, prepared, pending_recorded=bool(changes))
                with batch.timings.stage("write"):
                    deleted = await _delete_rows(tx, pipeline, prepared, capabilities)
                    refused = await _write_rows(tx, pipeline, prepared, capabilities)
                    rejects: Sequence[Reject] = prepared.rejects + refused_rejects(prepared, refused)
                    if rejects and self.dlq is None:  # counted as written: re-reads held already are not
                        written = await tx.write_rejects(pipeline.dlq_table, pipeline.name, rejects)
                        rejects = rejects if written is None else written
                batch.timings.begin("commit")
                await _advance_checkpoints(tx, pipeline.name, batch)
                if capabilities.control:
                    assert isinstance(tx, ControlTransaction)
                    await tx.record_usage(pipeline.name, pipeline.project, datetime.now(UTC),
                                          prepared.rows.num_rows - len(refused), batch.nbytes, len(rejects))
                if rejects and self.dlq is not None:
                    await self.dlq.write(pipeline.name, rejects)
        except RowsRefused as refused_step:
            # Refused rows are isolated where rows are written; a refusal anywhere else (a delete
            # a foreign key refuses, a DLQ row a constraint refuses) fails the batch.
            self._live_known = False
            raise ConduitError(f"pipeline {pipeline.name!r}: the destination refused a step of the commit "
                               f"other than writing rows: {refused_step.reason}") from None
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

    async def committed_already(self, prepared: Prepared) -> CommitResult | None:
        """After a lost connection: whether the batch was committed before the connection
        dropped (the stored positions are its end). Then its result, as far as it is known
        without its transaction (the refused rows and the changes are in the table's DLQ and
        history); None: it was not, commit it."""
        batch = prepared.batch
        stored = await self.destination.load_checkpoints(self.pipeline.name)
        if not batch.end or any(stored.get(p) != end for p, end in batch.end.items()):
            return None
        log.warning("the batch was committed before the connection dropped; not writing it again",
                    extra={"pipeline": self.pipeline.name})
        self._live_known = False
        rejects = prepared.rejects if prepared.known else list(batch.rejects)
        written = prepared.rows.num_rows if prepared.known else batch.rows.num_rows
        return CommitResult(rows_written=written, dlq_rows=len(rejects),
                            dlq_rows_by_rule=dict(Counter(r.rule for r in rejects)))

    async def _prepare(self, batch: Batch, live: dict[str, Column] | None) -> Prepared:
        return await asyncio.to_thread(prepare, self.destination.dialect, self.pipeline, batch, live,
                                       removed_warned=self._removed_warned)

    async def _as_the_table_is(self, tx: Transaction, prepared: Prepared) -> Prepared:
        """The batch was prepared against the table as last seen; if it changed since (another
        writer's DDL, or this pipeline's previous batch), prepare it again against the table now."""
        live = await tx.table_columns(self.pipeline.table_name)
        if prepared.known and live == prepared.live:
            return prepared
        again = await self._prepare(prepared.batch, live)
        again.replaying = prepared.replaying
        return again

    def _after_commit(self, prepared: Prepared, changes: Sequence[SchemaChange]) -> None:
        pending = [c for c in changes if not c.applied]
        if pending:
            try:
                write_migration(self.pipeline, pending)
            except OSError as exc:
                # The batch is committed and the DDL is in conduitd_schema_history: failing now
                # would report a committed batch as failed.
                log.error("schema changes not applied (schema_evolution manual): %s; the migration file "
                          "could not be written (%s); the statements are in conduitd_schema_history",
                          "; ".join(sorted({c.ddl for c in pending if c.ddl})), os_error_text(exc),
                          extra={"pipeline": self.pipeline.name})
        # DDL changed the table: read it again before the next batch is prepared.
        self._live_known = not any(c.applied for c in changes)
        self._live = prepared.live


async def commit_batch(destination: Destination, pipeline: PipelineConfig, batch: Batch,
                       dlq: DlqSink | None = None, replaying: Sequence[int] = ()) -> CommitResult:
    """Prepare and commit one batch (dlq replay, tests, benchmarks)."""
    committer = Committer(destination, pipeline, dlq)
    return await committer.commit(await committer.prepare(batch, replaying))


def capability_problem(pipeline: PipelineConfig, capabilities: Capabilities) -> str | None:
    """Why the pipeline cannot run on a destination with these capabilities (for `validate` too)."""
    if pipeline.mode == "upsert" and not capabilities.upsert:
        return (f"pipeline {pipeline.name!r}: mode upsert, but destination {pipeline.destination!r} "
                "cannot upsert; use mode append")
    return None


def _may_change_schema(prepared: Prepared) -> bool:
    """Whether the batch may bring schema changes (it is prepared in the commit, or planned some)."""
    return not prepared.known or bool(prepared.evolution and prepared.evolution.changes)


# -- the steps ---------------------------------------------------------------------------------


async def _remove_replayed(tx: Transaction, pipeline: PipelineConfig, replaying: Sequence[int]) -> None:
    if replaying and await tx.delete_rejects(pipeline.dlq_table, replaying) != len(replaying):
        raise ConduitError("some DLQ rows being replayed are gone (replayed elsewhere?): nothing was changed")


async def _apply_schema(tx: Transaction, pipeline: PipelineConfig, prepared: Prepared, *,
                        pending_recorded: bool = False,
                        outlived: list[SchemaChange] | None = None) -> list[SchemaChange]:
    """Run the plan's DDL and record its changes in the history; return what was recorded.
    `pending_recorded`: the changes not applied (manual mode) are in the history already.
    `outlived`: where DDL is not transactional, the changes whose DDL ran in an attempt that then
    failed (they stay applied; their history row did not): recorded now, and added to by this
    attempt until it commits."""
    if prepared.failure is not None:
        raise prepared.failure  # a `fail` rule or a schema that must stop: nothing of this batch commits
    earlier = list(outlived or ())
    evolution = prepared.evolution
    planned = list(evolution.changes) if evolution is not None else []
    for change in planned:
        if change.applied and change.ddl:
            await tx.run_ddl(change.ddl)
            log.info("schema change applied: %s", change.ddl, extra={"pipeline": pipeline.name})
            if outlived is not None:
                outlived.append(change)
    changes = earlier + [c for c in planned if c.applied or not pending_recorded]
    if changes:
        await tx.record_changes(pipeline.name, changes)
    return changes


async def _delete_rows(tx: Transaction, pipeline: PipelineConfig, prepared: Prepared,
                       capabilities: Capabilities) -> int:
    if not prepared.deletes.num_rows:
        return 0
    if not capabilities.deletes:  # never dropped without a word
        raise ConfigError(f"pipeline {pipeline.name!r}: the batch deletes rows, but destination "
                          f"{pipeline.destination!r} cannot delete")
    return await tx.delete_rows(pipeline.table_name, prepared.deletes)


async def _write_rows(tx: Transaction, pipeline: PipelineConfig, prepared: Prepared,
                      capabilities: Capabilities) -> list[tuple[int, str]]:
    """Write the rows; return the ones the destination refused (row in `prepared.rows`, reason).
    Without savepoints a refused row cannot be taken out of the transaction after a write: the
    rows the destination can tell it would refuse (`screen_rows`) are taken out before it, and a
    row refused all the same fails the batch."""
    if not prepared.rows.num_rows:
        return []
    if not capabilities.savepoints:
        rows, payload = prepared.rows, prepared.payload
        screened = await tx.screen_rows(pipeline.table_name, rows, prepared.columns, pipeline.unique_key)
        if screened:
            kept = np.ones(rows.num_rows, dtype=bool)
            kept[[row for row, _ in screened]] = False
            rows, payload = rows.filter(pa.array(kept)), None
        try:
            if rows.num_rows:
                await tx.write_rows(pipeline.table_name, rows, prepared.columns, pipeline.unique_key, payload)
        except RowsRefused as refused:
            raise ConduitError(f"the destination refused a row of the batch and cannot isolate it "
                               f"(it has no savepoints): {refused.reason}") from None
        return screened
    isolation = await write_isolating(tx, pipeline.table_name, prepared.rows, prepared.columns,
                                      pipeline.unique_key, prepared.payload)
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
