"""DLQ replay from the API: the CLI's replay (`conduitd dlq replay`), with the audit row written by
the same transaction that moves the entries.

A replay runs the entries through the commit protocol (`commit_batch(..., replaying=ids)`): in
one transaction the entries leave the DLQ, the ones that pass today's rules and schema are written
to the table, and the ones still rejected go back to the DLQ with today's reason (as new rows).
Its batch has no source positions, so it moves no checkpoint: it commits beside the running
pipeline's batches (each transaction on its own connection) without either losing or repeating
anything. Two replays of one entry: the second removes fewer DLQ rows than it names, and rolls
back whole (`ConduitError`, a 409 for the API).

To put the audit row into that transaction without a hook in the commit protocol, the replay
commits through `_Audited`, a view of the destination whose transactions forward every step and
add the audit row, just before COMMIT, to the transaction that removed DLQ rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from conduitd.config import PipelineConfig
from conduitd.core.records import Reject
from conduitd.destinations import Destination
from conduitd.destinations.base import DlqEntry
from conduitd.destinations.control import AuditEntry, ControlTransaction
from conduitd.runtime.replay import REPLAY_BATCH, rejected_as_repeat, replay_entries


@dataclass
class Replayed:
    """What a replay did."""

    replayed: list[int | str]
    moved: int = 0
    """Entries now in the table."""
    still_rejected: int = 0
    """Entries rejected again (back in the DLQ, with new ids and today's reason)."""
    held: list[int | str] | None = None
    """Entries of a `unique` rule not replayed (a filter without `rule` leaves them; see the CLI)."""


class _Seen:
    """A transaction's steps, forwarded; counts the DLQ rows it removes and writes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.removed = 0
        self.rejected = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        gone: int = await self._inner.delete_rejects(dlq_table, ids)
        self.removed += gone
        return gone

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject] | None:
        written: Sequence[Reject] | None = await self._inner.write_rejects(dlq_table, pipeline, rejects)
        self.rejected += len(rejects if written is None else written)
        return written

    # ControlTransaction's steps, spelled out so that `isinstance(tx, ControlTransaction)` holds.
    async def record_usage(self, pipeline: str, project: str, at: datetime, rows: int, nbytes: int,
                           dlq_rows: int) -> None:
        await self._inner.record_usage(pipeline, project, at, rows, nbytes, dlq_rows)

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._inner.record_audit(entry)

    async def decide_change(self, history_id: int, decision: str, actor: str) -> bool:
        decided: bool = await self._inner.decide_change(history_id, decision, actor)
        return decided

    async def run_ddl(self, statement: str) -> None:
        await self._inner.run_ddl(statement)


class _Audited:
    """The destination, whose transaction that removes DLQ rows also writes `audit(seen)`."""

    def __init__(self, inner: Destination, audit: Callable[[_Seen], AuditEntry]) -> None:
        self._inner = inner
        self._audit = audit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def capabilities(self) -> Any:
        return self._inner.capabilities

    @property
    def dialect(self) -> Any:
        return self._inner.dialect

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Seen]:
        async with self._inner.transaction() as tx:
            seen = _Seen(tx)
            yield seen
            if seen.removed:  # reached only when every step succeeded: the audit row commits with them
                assert isinstance(tx, ControlTransaction)
                await tx.record_audit(self._audit(seen))


async def replay(destination: Destination, pipeline: PipelineConfig, entries: Sequence[DlqEntry], *,
                 named_rule: bool, audit: Callable[[list[int | str], int, int], AuditEntry]) -> Replayed:
    """Replay `entries` (in parts of `REPLAY_BATCH`, one transaction and one audit row each);
    `audit(ids, moved, still_rejected)` makes a part's audit row. Unless the selection named a
    rule (`named_rule`), entries of a `unique` rule are held back, as the CLI does."""
    held = [] if named_rule else [e for e in entries if rejected_as_repeat(pipeline, e)]
    held_ids = {e.id for e in held}
    chosen = [e for e in entries if e.id not in held_ids]
    result = Replayed([e.id for e in chosen], held=[e.id for e in held])
    for first in range(0, len(chosen), REPLAY_BATCH):
        part = chosen[first:first + REPLAY_BATCH]
        ids = [e.id for e in part]

        def entry(seen: _Seen, ids: list[int | str] = ids) -> AuditEntry:
            return audit(ids, seen.removed - seen.rejected, seen.rejected)

        view = _Audited(destination, entry)
        written, rejected = await replay_entries(cast(Destination, view), pipeline, part)
        result.moved += written
        result.still_rejected += rejected
    return result
