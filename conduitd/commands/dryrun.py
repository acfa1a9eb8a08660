"""`run --dry-run`: what a `--once` run would do now, decided by the code `run` decides it with,
and nothing written.

Per pipeline: the destination is opened read-only (no schema, table, checkpoint or DLQ table is
created; a SQLite file is neither created nor changed); the source is read from the stored
checkpoints up to where it stands now, as `--once` reads it (a Kafka source under a throwaway
consumer group, so running daemons keep their assignments); the chunks are cut into batches as
`run` cuts them and each batch goes through `conduitd.core.prepare.prepare` (decode rejects,
quality rules, the schema-evolution plan and the casts) against the live table as the batches
before it would have left it, exactly as `conduitd.runtime.dryrun` judges a sample for
`validate`. No manifest record is appended, no DLQ entry written, no checkpoint stored.

Not covered (as in `validate`): what only the destination says when rows are written (a
constraint, an oversized row)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from conduitd.config import Config, KafkaSourceConfig, PipelineConfig, SourceConfig
from conduitd.core.dialect import Dialect
from conduitd.core.prepare import prepare
from conduitd.core.records import Batch, Position
from conduitd.core.redact import redact, redact_value
from conduitd.core.schema import Column
from conduitd.destinations import make_destination
from conduitd.errors import ConduitError, ConfigError, ExitCode
from conduitd.runtime.batching import END, ChunkQueue, cut_batches
from conduitd.runtime.commit import refresh_problem
from conduitd.sources import check_source, open_source
from conduitd.sources.base import FixedCheckpoints


@dataclass
class Outcome:
    """What `run --once` would do for one pipeline."""

    pipeline: str
    table: str
    mode: str
    records: int = 0
    """Records read (rows and decode rejects)."""
    written: int = 0
    """Rows that would be written (inserted, or upserted by key)."""
    deleted: int = 0
    """Rows that would be deleted by key (tombstones, soft deletes)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """DLQ rule -> rows that would go to the DLQ."""
    warned: int = 0
    """Rows a `warn` rule flagged (they would be written)."""
    applied: list[str] = field(default_factory=list)
    """DDL `run` would execute (in the batch transaction), in order, each once."""
    migrations: list[str] = field(default_factory=list)
    """DDL `run` would write to a migration file and not apply (manual mode)."""
    held: dict[str, str] = field(default_factory=dict)
    """Fields the table would not take, with the reason."""
    table_exists: bool = True
    stop: ConduitError | None = None
    """What `run` would stop on (the batch holding it and every later one not committed)."""

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "table": self.table, "mode": self.mode, "records_read": self.records,
                "rows_written": self.written, "rows_deleted": self.deleted,
                "rows_rejected": sum(self.rejected.values()), "rejected_by_rule": dict(self.rejected),
                "rows_warned": self.warned, "table_exists": self.table_exists, "would_apply": self.applied,
                "migrations": self.migrations, "held": self.held,
                "stops": None if self.stop is None else str(self.stop),
                "exit_code": int(self.stop.exit_code) if self.stop is not None else 0}


async def dry_run(config: Config, only: Sequence[str], *, as_json: bool = False) -> int:
    outcomes = [await _dry_run(config, p) for p in config.resources if not only or p.name in only]
    if as_json:
        body = redact_value([o.as_dict() for o in outcomes])
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        for outcome in outcomes:
            _print(outcome)
    stops = [o.stop for o in outcomes if o.stop is not None]
    return int(stops[0].exit_code) if stops else int(ExitCode.OK)


async def _dry_run(config: Config, pipeline: PipelineConfig) -> Outcome:
    destination = make_destination(config.destination(pipeline.destination))
    problem = refresh_problem(pipeline, destination, once=True)  # what the run would refuse first
    if problem is not None:
        raise ConfigError(problem)
    await destination.open(read_only=True)
    try:
        live = await destination.table_columns(pipeline.table_name)
        positions = await destination.load_checkpoints(pipeline.name)
    finally:
        await destination.close()
    outcome = Outcome(pipeline.name, pipeline.table_name, pipeline.mode, table_exists=live is not None)
    table = live
    warned: set[str] = set()
    async with contextlib.aclosing(_batches(config, pipeline, positions)) as batches:
        async for batch in batches:
            outcome.records += batch.records
            table = _judge(destination.dialect, pipeline, batch, table, warned, outcome)
            if outcome.stop is not None:
                break
    return outcome


def _judge(dialect: Dialect, pipeline: PipelineConfig, batch: Batch, table: dict[str, Column] | None,
           warned: set[str], outcome: Outcome) -> dict[str, Column] | None:
    """Add what `run` would do with `batch` to `outcome`; the table as the commit would leave it."""
    prepared = prepare(dialect, pipeline, batch, table, removed_warned=warned)
    if prepared.failure is not None:  # the batch is not committed: none of its rows, rejects or DDL stand
        outcome.stop = prepared.failure
        return table
    outcome.written += prepared.rows.num_rows
    outcome.deleted += prepared.deletes.num_rows
    outcome.rejected.update(r.rule for r in prepared.rejects)
    outcome.warned += len(prepared.warned)
    evolution = prepared.evolution
    if evolution is None:
        return table
    for name, reason in evolution.held.items():
        outcome.held.setdefault(name, reason)
    for change in evolution.changes:
        listed = outcome.applied if change.applied else outcome.migrations
        if change.ddl and change.ddl not in listed:
            listed.append(change.ddl)
    return dict(evolution.columns) if any(c.applied for c in evolution.changes) else table


async def _batches(config: Config, pipeline: PipelineConfig,
                   positions: dict[str, Position]) -> AsyncGenerator[Batch, None]:
    """The source from the stored positions to where it stands now, cut as `run` cuts it (the
    reader runs ahead by at most two batches, so memory stays bounded)."""
    source_config: SourceConfig = config.source(pipeline.source)
    if isinstance(source_config, KafkaSourceConfig):
        await check_source(source_config)  # brokers that do not answer: exit 5, not "0 records"
        source_config = source_config.model_copy(
            update={"group_id": f"{source_config.group_id}-dry-run-{uuid.uuid4().hex[:8]}"})
    source = open_source(source_config, pipeline, config.service, once=True)
    queue = ChunkQueue(max_records=2 * pipeline.batch.first_rows)
    stop = asyncio.Event()

    async def read() -> None:  # an error here cancels the batching below and is raised by the task group
        async for chunk in source.chunks(FixedCheckpoints(positions, done=stop), stop):
            await queue.put(chunk)
        await queue.put(END)

    try:
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(read())
            try:
                async for batch in cut_batches(queue, pipeline.batch):
                    yield batch
            finally:
                stop.set()
                reader.cancel()
    finally:
        await source.close()


def _print(outcome: Outcome) -> None:
    print(f"{outcome.pipeline}: dry run ({outcome.mode} into table {outcome.table!r}), nothing written")
    print(f"  records read:       {outcome.records}")
    print(f"  rows to write:      {outcome.written}")
    if outcome.deleted:
        print(f"  rows to delete:     {outcome.deleted}")
    rules = ", ".join(f"{rule} {n}" for rule, n in outcome.rejected.most_common())
    print(f"  rows to the DLQ:    {sum(outcome.rejected.values())}" + (f" ({rules})" if rules else ""))
    if outcome.warned:
        print(f"  rows warned about:  {outcome.warned} (written)")
    if not outcome.table_exists:
        print("  the table does not exist yet")
    for ddl in outcome.applied:
        print(f"  would apply: {ddl}")
    for ddl in outcome.migrations:
        print(f"  would write to a migration file: {ddl}")
    for name, reason in outcome.held.items():
        print(redact(f"  field {name[:60]!r} not taken: {reason}"))
    if outcome.stop is not None:
        print(redact(f"  run stops (exit {int(outcome.stop.exit_code)}): {outcome.stop}"))
        print("  (batches before the one that stops would be committed; counts above are theirs)")
