"""The contract every source keeps, and what it may ask of the pipeline that runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conduitd.core.records import Chunk, Position


@dataclass(frozen=True, slots=True)
class Census:
    """Who holds what in a lease group: for a replica to take its fair share and no more."""

    replicas: int
    """Live replicas (this one included)."""
    partitions: int
    """Leases of the group (held or not)."""
    mine: tuple[str, ...]
    """`pipeline/partition` names of the live leases this replica holds, in name order."""

    @property
    def share(self) -> int:
        return max(1, -(-self.partitions // max(1, self.replicas)))


class Leases(Protocol):
    """Leases on partitions, kept in the destination (`Capabilities.leases`): one replica reads a
    partition at a time. Winning a lease stamps the committed position with the new epoch (in the
    destination, by compare-and-set), so a commit of the previous owner, whose batches start at the
    old stamp, is refused inside its own transaction."""

    owner: str
    """This replica's name (`service.replica_id`)."""

    async def claim(self, partition: str, ttl: float) -> tuple[int, Position] | None:
        """Take the lease if it is free, expired or this replica's: (epoch, the committed position
        stamped with it: the start of the next chunk); None when another replica holds it."""

    async def renew(self, partition: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was lost (another replica took it after it expired)."""

    async def release(self, partition: str, epoch: int) -> None: ...

    async def census(self, partition: str, ttl: float) -> Census:
        """Say this replica is alive for `ttl`, and count the group's replicas and leases (this
        partition's counted even before its first claim)."""


class Checkpoints(Protocol):
    """The pipeline's side of partition ownership, for sources whose partitions move (Kafka)."""

    leases: Leases | None
    """The lease table, when the destination keeps one (None otherwise)."""

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` key values of the pipeline's destination table after `after`, in key order
        (a key scan compares them with the source's to find rows deleted there)."""

    async def committed(self) -> dict[str, Position]:
        """The committed positions, read from the destination once no commit is in flight."""

    async def revoke(self) -> None:
        """Partitions are about to move: return once no commit is in flight. Every chunk handed
        over before this call, in whatever state, is dropped uncommitted (the source has moved to
        a new `epoch`); the new owner re-reads it from the committed position."""

    async def flush(self) -> None:
        """Every chunk handed over so far is all there is for now, and the source waits for it to
        be committed (Kafka under --once, caught up): the pending batch is cut at once instead of
        after `batch.max_wait`."""


class FixedCheckpoints:
    """Checkpoints for a read that commits nothing (a dry run, a sample, the contract kit, tests):
    the positions given, no lease table, no key scan. `done`, when given, is set as the source
    flushes: it has read all there is and would wait for commits that never come, so the read
    ends there."""

    leases: Leases | None = None

    def __init__(self, positions: Mapping[str, Position] | None = None, done: asyncio.Event | None = None) -> None:
        self.positions = dict(positions or {})
        self.done = done

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        return []

    async def committed(self) -> dict[str, Position]:
        return dict(self.positions)

    async def revoke(self) -> None:
        return None

    async def flush(self) -> None:
        if self.done is not None:
            self.done.set()


class Source(Protocol):
    """Reads records in order per partition and hands them over as decoded chunks.

    The pipeline calls `chunks` once. The source resumes every partition right after its
    committed position (`checkpoints.committed()`; the destination is the source of truth) and
    from its configured start where none is stored. Each chunk's `start` is the position it
    follows (the committed one for the first chunk of a partition) and its `end` the position
    after its last record, so consecutive chunks of a partition chain exactly. Chunks hold at most
    the `max_rows` the source was built with, and carry the source's `epoch` at the time they
    were read: a chunk from an older epoch is never committed. Malformed records travel as
    `Chunk.rejects`, never as exceptions. When `stop` is set the iterator returns at the next
    chunk edge; in `once` mode it also returns when it has read everything that existed when it
    started. After each commit the pipeline calls `acknowledge` with the batch's end positions
    (advisory: e.g. Kafka group offsets for lag tools). `close` releases everything (harmless twice).
    """

    @property
    def epoch(self) -> int: ...



    def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]: ...

    async def acknowledge(self, positions: Mapping[str, Position]) -> None: ...

    async def close(self) -> None: ...

    async def resync(self) -> bool:
        """A commit lost its compare-and-set: another owner advanced a partition. Drop what was
        read (new epoch) and resume every partition from its committed position; False when the
        source cannot (the pipeline then stops)."""
        ...

    def lag(self) -> dict[str, dict[str, float]]:
        """Per partition, how far behind the source's end it is: {"records": n, "seconds": s}
        (Kafka) or {"bytes": n} (files); for /status and /metrics."""
        ...

    def problem(self) -> str | None:
        """Why the source cannot read right now (broker unreachable), or None."""
        ...
