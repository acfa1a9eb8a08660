"""The contract every source keeps, and what it may ask of the pipeline that runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from conduitd.core.records import Chunk, Position


class Checkpoints(Protocol):
    """The pipeline's side of partition ownership, for sources whose partitions move (Kafka)."""

    async def committed(self) -> dict[str, Position]:
        """The committed positions, read from the destination once no commit is in flight."""

    async def revoke(self) -> None:
        """Partitions are about to move: return once no commit is in flight. Every chunk handed
        over before this call, in whatever state, is dropped uncommitted (the source has moved to
        a new `epoch`); the new owner re-reads it from the committed position."""


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
