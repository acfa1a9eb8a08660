"""Cutting micro-batches from a bounded queue of chunks.

A batch is cut when `max_rows` (or the `BatchSizer`'s size) or `max_bytes` is reached, when a
next chunk as large as the last one would not fit, or `max_wait` after its first chunk arrived,
whichever comes first. A chunk is never split (positions
are known only at chunk edges), so sources keep chunks at or below that size; a batch never
exceeds it unless a single chunk does (under `max_rows: auto`, where the size is a target and not
a limit, a batch ends as near it as chunks allow, never past `max_rows_limit`). `END` in the
queue means the source is done: the last batch is cut at once. `FLUSH` means the source has
handed over all there is for now and waits for it to be committed (Kafka under --once): what is
pending is cut at once too. A chunk of a newer epoch (partitions moved) drops the pending chunks
of the older one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import numpy as np
import pyarrow as pa

from conduitd.config import BatchConfig
from conduitd.core.arrowutil import concat_tables
from conduitd.core.records import Batch, Chunk, Origin, Position
from conduitd.core.timings import Timings
from conduitd.runtime.tuning import BatchSizer

END: Final = None


class Flush:
    """The marker `FLUSH` (its only instance)."""


FLUSH: Final = Flush()


class ChunkQueue(asyncio.Queue[Chunk | Flush | None]):
    """Chunks between the reader and the batcher, bounded by the records they hold rather than
    their number (a Kafka chunk holds a few thousand records, a file chunk tens of thousands):
    when it holds `max_records` the reader waits, and with it the source."""

    def __init__(self, max_records: int | Callable[[], int] = 0) -> None:
        """`max_records`: a number, or a function asked each time (two batches of a `BatchSizer`
        whose size changes: `lambda: 2 * sizer.limit`); 0: unbounded."""
        super().__init__()
        self.max_records = max_records
        self.records = 0

    @property
    def bound(self) -> int:
        return self.max_records() if callable(self.max_records) else self.max_records

    def full(self) -> bool:
        bound = self.bound
        return bool(bound) and self.records >= bound and not self.empty()

    def _put(self, item: Chunk | Flush | None) -> None:
        self.records += _size(item)
        super()._put(item)

    def _get(self) -> Chunk | Flush | None:
        item: Chunk | Flush | None = super()._get()
        self.records -= _size(item)
        return item


def _size(chunk: Chunk | Flush | None) -> int:
    return chunk.rows.num_rows + len(chunk.rejects) if isinstance(chunk, Chunk) else 0


def repeats_names(rows: pa.Table) -> bool:
    """Whether a column name appears twice (a CSV header `id,name,name`, a Parquet file's columns)."""
    return len(set(rows.column_names)) != len(rows.column_names)


def build_batch(chunks: list[Chunk]) -> Batch:
    """Join chunks into one batch; per partition the start is the first chunk's, the end the last's."""
    start: dict[str, Position] = {}
    end: dict[str, Position] = {}
    origins = []
    first_row = 0
    for chunk in chunks:
        start.setdefault(chunk.partition, chunk.start)
        end[chunk.partition] = chunk.end
        if chunk.rows.num_rows:
            origins.append(Origin(first_row, chunk.partition, chunk.start, chunk.row_key, chunk.reread))
            first_row += chunk.rows.num_rows
    timings = Timings()
    for chunk in chunks:
        timings.merge(chunk.timings)
    with_rows = [c for c in chunks if c.rows.num_rows]
    offsets = None
    if with_rows and all(c.row_offsets is not None and len(c.row_offsets) == c.rows.num_rows for c in with_rows):
        offsets = np.concatenate([c.row_offsets for c in with_rows if c.row_offsets is not None])
    deletes = None
    if any(c.deletes is not None for c in with_rows):
        # Deletes travel beside the rows, never as a column: joined in the same order as the rows.
        deletes = np.concatenate([np.zeros(c.rows.num_rows, dtype=bool) if c.deletes is None
                                  else np.asarray(c.deletes, dtype=bool) for c in with_rows])
    return Batch(
        row_offsets=offsets,
        deletes=deletes,
        timings=timings,
        rows=concat_tables([c.rows for c in chunks]),
        rejects=tuple(r for c in chunks for r in c.rejects),
        start=start,
        end=end,
        nbytes=sum(c.nbytes for c in chunks),
        origins=tuple(origins),
        epoch=chunks[0].epoch if chunks else 0,
    )


async def cut_batches(
    queue: ChunkQueue, limits: BatchConfig, clock: Callable[[], float] = time.monotonic,
    sizer: BatchSizer | None = None, idle: asyncio.Event | None = None,
) -> AsyncIterator[Batch]:
    """Yield batches from `queue` until it yields END; `sizer` (if given) sets the row limit of
    each batch as it is cut; `idle` (if given) is set while the cutter waits for a chunk with
    nothing pending (everything it was handed has been yielded), and clear otherwise."""
    pending: list[Chunk] = []
    rows = nbytes = 0
    deadline = 0.0
    while True:
        try:
            if pending:
                async with asyncio.timeout(max(0.0, deadline - clock())):
                    chunk = await queue.get()
            else:
                if idle is not None:
                    idle.set()
                chunk = await queue.get()
                if idle is not None:
                    idle.clear()
        except TimeoutError:
            yield build_batch(pending)
            pending, rows, nbytes = [], 0, 0
            continue
        if chunk is END:
            if pending:
                yield build_batch(pending)
            return
        if isinstance(chunk, Flush):
            if pending:
                yield build_batch(pending)
                pending, rows, nbytes = [], 0, 0
            continue
        if pending and chunk.epoch != pending[0].epoch:
            # Partitions moved: what is pending was read under the old assignment and will be
            # read again by their new owner; it must not be mixed with (or block) newer chunks.
            pending, rows, nbytes = [], 0, 0
        if repeats_names(chunk.rows):
            # Its rows go to the DLQ (an ambiguous field), and a table with a repeated name cannot
            # be joined with others: it is a batch of its own.
            if pending:
                yield build_batch(pending)
                pending, rows, nbytes = [], 0, 0
            yield build_batch([chunk])
            continue
        chunk_rows = chunk.rows.num_rows + len(chunk.rejects)
        max_rows = sizer.limit if sizer is not None else limits.max_rows
        if pending and rows + chunk_rows > max_rows and not _nearer_with(rows, chunk_rows, max_rows, limits):
            yield build_batch(pending)
            pending, rows, nbytes = [], 0, 0
        if not pending:
            deadline = clock() + limits.max_wait
        pending.append(chunk)
        rows += chunk_rows
        nbytes += chunk.nbytes
        if rows >= max_rows or nbytes >= limits.max_bytes or _no_room_for(chunk_rows, rows, max_rows, limits):
            yield build_batch(pending)
            pending, rows, nbytes = [], 0, 0


def _no_room_for(chunk_rows: int, rows: int, size: int, limits: BatchConfig) -> bool:
    """Whether a next chunk as large as the last one would not join the batch: then the batch is
    cut now, not when that chunk arrives (its preparation starts one chunk earlier, while the
    batch before it is written; chunks of a source come in about the same size)."""
    return rows + chunk_rows > size and not _nearer_with(rows, chunk_rows, size, limits)


def _nearer_with(rows: int, chunk_rows: int, size: int, limits: BatchConfig) -> bool:
    """Whether a chunk that takes a batch past the sizer's `size` still belongs to it: under
    `max_rows: auto` the size is a target, so the batch ends nearest it (chunks capped by a
    source's read size would otherwise keep batches a chunk short of it), never past `max_rows`
    (there `max_rows_limit`). A fixed size is a limit: `size` is `max_rows`, and this is false."""
    return rows + chunk_rows <= limits.max_rows and rows + chunk_rows - size < size - rows
