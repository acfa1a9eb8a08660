"""Batches are cut at max_rows, max_bytes or max_wait, and carry exact per-partition positions."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from conduitd.config import BatchConfig
from conduitd.core.records import Batch, Chunk, Reject
from conduitd.runtime.batching import END, FLUSH, ChunkQueue, cut_batches


def chunk(partition: str, start: int | None, rows: int, nbytes: int = 10) -> Chunk:
    table = pa.table({"id": list(range(rows))})
    start_pos = None if start is None else {"offset": start}
    return Chunk(partition, start_pos, {"offset": (start or 0) + rows}, table, (), nbytes)


async def collect(chunks: list[Chunk | None], limits: BatchConfig) -> list[Batch]:
    queue = ChunkQueue()
    for item in chunks:
        queue.put_nowait(item)
    return [b async for b in cut_batches(queue, limits)]


async def test_cut_at_max_rows_without_splitting_chunks() -> None:
    batches = await collect([chunk("a", None, 4), chunk("a", 4, 4), chunk("a", 8, 4), END],
                            BatchConfig(max_rows=8, max_wait=60))
    assert [b.rows.num_rows for b in batches] == [8, 4]
    assert batches[0].start == {"a": None} and batches[0].end == {"a": {"offset": 8}}
    assert batches[1].start == {"a": {"offset": 8}} and batches[1].end == {"a": {"offset": 12}}


async def test_a_chunk_that_would_overflow_starts_the_next_batch() -> None:
    batches = await collect([chunk("a", None, 5), chunk("a", 5, 5), END], BatchConfig(max_rows=8, max_wait=60))
    assert [b.rows.num_rows for b in batches] == [5, 5]


async def test_cut_at_max_bytes() -> None:
    batches = await collect([chunk("a", None, 1, 600), chunk("a", 1, 1, 600), chunk("a", 2, 1, 10), END],
                            BatchConfig(max_rows=100, max_bytes=1000, max_wait=60))
    assert [b.rows.num_rows for b in batches] == [2, 1]
    assert batches[0].nbytes == 1200


async def test_cut_at_max_wait_when_the_source_goes_quiet() -> None:
    queue = ChunkQueue()
    limits = BatchConfig(max_rows=1000, max_wait=0.05)
    batches = cut_batches(queue, limits)
    queue.put_nowait(chunk("a", None, 3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await anext(batches)
    assert first.rows.num_rows == 3
    assert 0.04 <= loop.time() - started < 1.0
    queue.put_nowait(END)
    assert [b async for b in batches] == []


async def test_a_flush_cuts_what_is_pending_at_once() -> None:
    """A source that has handed over all there is and waits for the commit (Kafka under --once)
    flushes: the batch is cut without waiting for max_wait (an hour here), and the chunks after
    the flush start a new batch; a flush with nothing pending cuts nothing."""
    queue = ChunkQueue()
    batches = cut_batches(queue, BatchConfig(max_rows=1000, max_wait=3600))
    queue.put_nowait(FLUSH)
    queue.put_nowait(chunk("a", None, 3))
    queue.put_nowait(chunk("b", None, 2))
    queue.put_nowait(FLUSH)
    first = await asyncio.wait_for(anext(batches), 30)
    assert first.rows.num_rows == 5 and first.end == {"a": {"offset": 3}, "b": {"offset": 2}}
    assert queue.records == 0
    queue.put_nowait(chunk("a", 3, 4))
    queue.put_nowait(END)
    rest = [b async for b in batches]
    assert [b.rows.num_rows for b in rest] == [4] and rest[0].start == {"a": {"offset": 3}}


async def test_a_batch_a_chunk_like_the_last_would_overflow_is_cut_without_waiting_for_it() -> None:
    """Chunks of 3 rows, batches of at most 8: after two chunks a third would not fit, so the
    batch of 6 is cut at once (its preparation need not wait for the next chunk or max_wait)."""
    queue = ChunkQueue()
    batches = cut_batches(queue, BatchConfig(max_rows=8, max_wait=3600))
    queue.put_nowait(chunk("a", None, 3))
    queue.put_nowait(chunk("a", 3, 3))
    first = await asyncio.wait_for(anext(batches), 30)
    assert first.rows.num_rows == 6 and first.end == {"a": {"offset": 6}}
    queue.put_nowait(chunk("a", 6, 1))  # smaller chunks: room for more
    queue.put_nowait(chunk("a", 7, 1))
    queue.put_nowait(END)
    assert [b.rows.num_rows for b in [b async for b in batches]] == [2]


async def test_positions_per_partition_and_rejects_travel_with_the_batch() -> None:
    bad = Reject("b", {"offset": 7}, "not valid JSON", "{oops")
    b_chunk = Chunk("b", {"offset": 3}, {"offset": 9}, pa.table({"id": [1]}), (bad,), 6)
    batches = await collect([chunk("a", None, 2), b_chunk, chunk("a", 2, 2), END],
                            BatchConfig(max_rows=100, max_wait=60))
    (batch,) = batches
    assert batch.start == {"a": None, "b": {"offset": 3}}
    assert batch.end == {"a": {"offset": 4}, "b": {"offset": 9}}
    assert batch.rejects == (bad,) and batch.records == 6
    assert batch.origin_of(0).partition == "a"
    assert batch.origin_of(2).partition == "b" and batch.origin_of(2).start == {"offset": 3}
    assert batch.origin_of(3).partition == "a" and batch.origin_of(3).start == {"offset": 2}


async def test_end_of_source_flushes_and_tables_with_different_columns_merge() -> None:
    one = Chunk("a", None, {"offset": 1}, pa.table({"id": [1], "x": ["s"]}), (), 1)
    two = Chunk("a", {"offset": 1}, {"offset": 2}, pa.table({"id": [2], "y": [1.5]}), (), 1)
    clash = Chunk("a", {"offset": 2}, {"offset": 3}, pa.table({"id": ["three"]}), (), 1)
    (batch,) = await collect([one, two, clash, END], BatchConfig(max_rows=100, max_wait=60))
    assert batch.rows.to_pylist() == [
        {"id": "1", "x": "s", "y": None}, {"id": "2", "x": None, "y": 1.5}, {"id": "three", "x": None, "y": None}]


async def test_the_queue_is_bounded_by_records_not_chunks() -> None:
    queue = ChunkQueue(max_records=10)
    await queue.put(chunk("a", None, 6))
    await queue.put(chunk("a", 6, 6))  # 12 records now: full
    waiting = asyncio.create_task(queue.put(chunk("a", 12, 1)))
    await asyncio.sleep(0.01)
    assert not waiting.done() and queue.records == 12
    await queue.get()
    await asyncio.wait_for(waiting, 1)
    assert queue.records == 7
