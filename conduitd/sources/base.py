"""The contract every source keeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from conduitd.records import Chunk, Position


class Source(Protocol):
    """Reads records in order per partition and hands them over as decoded chunks.

    The runtime calls `chunks` once, with the positions the destination has committed (its
    checkpoint table is the source of truth); the source resumes every partition right after its
    position, and from the beginning where none is stored. Each chunk's `start` is the position it
    follows (the stored one for the first chunk of a partition) and its `end` the position after
    its last record, so consecutive chunks of a partition chain exactly. Chunks hold at most the
    `max_rows` the source was built with. Malformed records travel as `Chunk.rejects`, never as
    exceptions. When `stop` is set the iterator returns at the next chunk edge; in `once` mode it
    also returns when it has read everything that existed when it started. Rows are not
    acknowledged by the source: a chunk is done only when the runtime commits it.
    """

    def chunks(self, positions: Mapping[str, Position], stop: asyncio.Event) -> AsyncIterator[Chunk]:
        ...

    def backlog(self) -> dict[str, int]:
        """Per partition, how much is known to be waiting (bytes for files); for /status."""
        ...
