"""DLQ entries run again through today's rules and schema (`conduitd dlq replay`, the API): the
ones that pass move to the table and leave the DLQ in ONE transaction (the commit protocol's
`replaying` step), exactly once; the others are rejected again with today's reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.arrowutil import concat_tables
from conduitd.core.decode import decode_jsonl
from conduitd.core.records import Batch, Origin, Position, Reject
from conduitd.destinations import Destination
from conduitd.destinations.base import DlqEntry
from conduitd.runtime.commit import commit_batch

REPLAY_BATCH = 10_000
"""Entries replayed in one transaction."""


def rejected_as_repeat(pipeline: PipelineConfig, entry: DlqEntry) -> bool:
    """Rejected by a `unique` rule (named in today's config, or by its default name)."""
    unique = {c.rule for c in pipeline.quality_checks if c.check == "unique"}
    return entry.rule in unique or entry.rule.startswith("unique:")


def _at(position: Position) -> Callable[[int], Position]:
    return lambda _: position


async def replay_entries(destination: Destination, pipeline: PipelineConfig,
                         entries: Sequence[DlqEntry]) -> tuple[int, int]:
    """Commit `entries` again in one transaction that also removes them from the DLQ; return
    (rows now in the table, rows rejected again)."""
    tables: list[pa.Table] = []
    origins: list[Origin] = []
    rejects: list[Reject] = []
    row = 0
    for entry in entries:
        payload = (entry.payload or "").encode()
        rows, bad = decode_jsonl(payload + b"\n", entry.partition or "", _at(entry.position))
        rejects += [Reject(entry.partition or "", entry.position, r.reason, r.payload) for r in bad]
        if rows.num_rows:
            origins.append(Origin(row, entry.partition or "", entry.position))
            tables.append(rows)
            row += rows.num_rows
    batch = Batch(rows=concat_tables(tables), rejects=tuple(rejects), start={}, end={}, nbytes=0,
                  origins=tuple(origins))
    # The same commit as `run`'s, which also removes the replayed DLQ rows in its transaction.
    result = await commit_batch(destination, pipeline, batch, replaying=[int(e.id) for e in entries])
    return result.rows_written, result.dlq_rows
