"""The batch sizer's control law and its suggestions, fed made-up observations (no clock, no I/O)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import BatchConfig
from conduitd.core.records import Chunk
from conduitd.core.timings import Timings
from conduitd.runtime.batching import END, ChunkQueue, cut_batches
from conduitd.runtime.suggestions import Observation, cost_model, scale_out, suggest
from conduitd.runtime.tuning import BatchSizer, Bounds, next_limit

BOUNDS = Bounds(low=100, high=1_000_000, max_bytes=64 << 20, target=2.0)


def auto(**settings: Any) -> BatchConfig:
    return BatchConfig.model_validate({"max_rows": "auto", **settings})


class Destination:
    """A made-up destination: `fixed + per_row * rows` seconds per commit."""

    def __init__(self, fixed: float, per_row: float) -> None:
        self.fixed, self.per_row = fixed, per_row

    def seconds(self, rows: int) -> float:
        return self.fixed + self.per_row * rows


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(sizer: BatchSizer, destination: Destination, batches: int, *, row_bytes: int = 100,
        stages: dict[str, tuple[int, int]] | None = None, clock: Clock | None = None) -> list[int]:
    """Commit `batches` full batches of the sizer's size; the sizes it chose, in order."""
    sizes = []
    for _ in range(batches):
        rows = sizer.limit
        sizes.append(rows)
        seconds = destination.seconds(rows)
        if clock is not None:
            clock.now += seconds
        sizer.observe(rows, rows * row_bytes, seconds, Timings(dict(stages or {})))
    return sizes


def test_a_fast_commit_grows_the_size_at_most_fourfold_from_the_batch_it_saw() -> None:
    assert next_limit(500, 500, 0.01, BOUNDS) == 2000
    # A batch of 200 rows (cut by max_wait) is no evidence for more than 800.
    assert next_limit(5000, 200, 0.01, BOUNDS) == 5000
    # Near the target (within the band) nothing moves.
    assert next_limit(10_000, 10_000, 1.8, BOUNDS) == 10_000
    assert next_limit(10_000, 10_000, 2.1, BOUNDS) == 10_000


def test_a_slow_commit_shrinks_toward_the_target_at_most_by_half() -> None:
    assert next_limit(100_000, 100_000, 3.0, BOUNDS) == round(100_000 * 2.0 / 3.0 * 0.9)
    assert next_limit(100_000, 100_000, 60.0, BOUNDS) == 50_000
    # A slow batch never grows the size, even a small one.
    assert next_limit(100_000, 1000, 5.0, BOUNDS) == 50_000


def test_bounds_and_the_memory_bound_hold() -> None:
    assert next_limit(900_000, 900_000, 0.1, BOUNDS) == 1_000_000
    assert next_limit(150, 150, 30.0, BOUNDS) == 100
    # 1 KiB per row: 64 MiB holds 65,536 rows, whatever the latency says.
    assert next_limit(50_000, 50_000, 0.1, BOUNDS, row_bytes=1024) == 65_536


def test_the_sizer_climbs_from_a_bad_start_and_settles_near_the_target() -> None:
    sizer = BatchSizer(auto(initial_rows=500, target_latency="2s"))
    destination = Destination(fixed=0.02, per_row=10e-6)  # 2s ~ 198,000 rows
    sizes = run(sizer, destination, 30)
    assert sizes[:4] == [500, 2000, 8000, 32000]
    settled = sizes[-5:]
    assert len(set(settled)) == 1, sizes
    latency = destination.seconds(settled[0])
    assert 0.7 * 2.0 <= latency <= 1.1 * 2.0, (sizes, latency)


def test_the_sizer_shrinks_when_the_destination_slows_down() -> None:
    sizer = BatchSizer(auto(initial_rows=100_000, target_latency="1s"))
    fast, slow = Destination(0.01, 5e-6), Destination(0.01, 50e-6)
    run(sizer, fast, 10)
    before = sizer.limit
    sizes = run(sizer, slow, 10)
    assert sizer.limit < before / 5
    assert slow.seconds(sizes[-1]) <= 1.1, sizes


def test_the_sizer_stays_under_max_bytes_and_max_rows_limit() -> None:
    sizer = BatchSizer(auto(initial_rows=1000, max_bytes="1MiB", target_latency="10s"))
    assert max(run(sizer, Destination(0.001, 1e-7), 20, row_bytes=200)) <= (1 << 20) // 200 + 1
    sizer = BatchSizer(auto(initial_rows=1000, max_rows_limit=20_000, target_latency="10s"))
    assert max(run(sizer, Destination(0.001, 1e-7), 20)) == 20_000


def test_a_fixed_size_never_moves() -> None:
    sizer = BatchSizer(BatchConfig(max_rows=5000))
    assert run(sizer, Destination(0.001, 1e-7), 10) == [5000] * 10
    assert sizer.report()["adaptive"] is False


def test_the_sizer_keeps_a_sources_chunks_at_its_size() -> None:
    class Source:
        max_rows = 7

    source = Source()
    sizer = BatchSizer(auto(initial_rows=500), source=source)
    assert source.max_rows == 500
    run(sizer, Destination(0.01, 1e-6), 3)
    assert source.max_rows == sizer.limit > 500
    fixed = Source()
    BatchSizer(BatchConfig(max_rows=5000), source=fixed)
    assert fixed.max_rows == 7  # a fixed size leaves the source as it was built


def test_the_cost_model_is_fitted_from_several_sizes() -> None:
    clock = Clock()
    sizer = BatchSizer(auto(initial_rows=500), clock=clock)
    run(sizer, Destination(0.05, 4e-6), 8, clock=clock)
    model = cost_model(sizer.recent)
    assert model is not None and model.basis == "fit"
    assert model.fixed == pytest.approx(0.05, rel=1e-6)
    assert model.per_row == pytest.approx(4e-6, rel=1e-6)
    measured = sizer.report()["measured"]
    assert measured["destination_busy"] == 1.0


def test_a_fixed_size_too_small_for_its_commit_cost_gets_a_larger_suggestion() -> None:
    clock = Clock()
    sizer = BatchSizer(BatchConfig(max_rows=500), clock=clock)
    # Every commit 50ms of checkpoint and COMMIT plus 2µs a row: 500 rows are 98% overhead.
    run(sizer, Destination(0.05, 2e-6), 10, clock=clock, stages={"commit": (0, 50_000_000)})
    [found] = [s for s in sizer.report()["suggestions"] if s["setting"] == "batch.max_rows"]
    assert found["now"] == 500
    assert found["suggested"] == 220_000  # 0.05 * 9 / 2e-6 = 225,000 to two digits
    assert "fixed cost" in found["why"]


def observed(rows: int, seconds: float, stages: dict[str, float], limit: int, count: int = 5) -> list[Observation]:
    """`count` batches committed one after the other (the destination always busy)."""
    return [Observation(rows, rows * 100, seconds, stages, limit, seconds * (i + 1)) for i in range(count)]


def test_the_suggestion_respects_the_latency_target_and_memory() -> None:
    # One size seen: the commit stage (50ms) is the fixed cost, the rest 2e-5 s a row.
    recent = observed(500, 0.05 + 500 * 2e-5, {"commit": 0.05}, 500)
    [by_overhead] = suggest(recent, BatchConfig(max_rows=500, target_latency="2s"), 500, 100)
    assert by_overhead["suggested"] == 22_000  # 0.05 * 9 / 2e-5 = 22,500 to two digits
    slow = observed(500, 0.05 + 500 * 2e-4, {"commit": 0.05}, 500)
    [by_latency] = suggest(slow, BatchConfig(max_rows=500, target_latency="0.5s"), 500, 100)
    assert by_latency["suggested"] == 2000 and "target_latency" in by_latency["why"]  # (0.45 - 0.05) / 2e-4
    [by_memory] = suggest(recent, BatchConfig(max_rows=500, max_bytes="4MiB"), 500, 1000)
    assert by_memory["suggested"] == 4200 and "max_bytes" in by_memory["why"]
    assert suggest(recent, BatchConfig(max_rows=20_000), 20_000, 100) == []  # close enough already


def test_rows_without_a_size_capped_by_max_rows_limit_get_a_suggestion_not_a_crash() -> None:
    """Batches whose rows had no size (row_bytes 0: no memory bound) and a size capped by
    max_rows_limit: the reasoning used to round the infinite memory bound, an OverflowError that
    failed the pipeline after its commit (seen in the binlog source's SIGKILL test)."""
    recent = observed(5000, 0.05 + 5000 * 2e-9, {"commit": 0.05}, 5000)
    [capped] = suggest(recent, BatchConfig(max_rows=5000), 5000, 0)  # by overhead ~4.5M rows: above the limit
    assert capped["suggested"] == 1_000_000 and capped["why"].startswith("max_rows_limit"), capped


def test_no_suggestion_before_enough_batches_nor_when_the_source_is_idle() -> None:
    one = [Observation(100, 1000, 0.01, {}, 5000, 0.0)]
    assert suggest(one, BatchConfig(max_rows=5000), 5000, 10) == []
    trickle = [Observation(100, 1000, 0.01, {"poll": 1.0}, 5000, float(i)) for i in range(5)]
    [found] = suggest(trickle, BatchConfig(max_rows=5000), 5000, 10)
    assert found["setting"] == "none" and "max_wait" in found["why"]


def test_an_idle_destination_points_at_the_source_or_the_cpu() -> None:
    reading = [Observation(5000, 500_000, 0.01, {"poll": 0.9, "decode": 0.1}, 5000, float(i)) for i in range(5)]
    assert suggest(reading, BatchConfig(max_rows=5000), 5000, 100)[-1]["setting"] == "source poll size"
    decoding = [Observation(5000, 500_000, 0.01, {"poll": 0.1, "decode": 0.9}, 5000, float(i)) for i in range(5)]
    assert suggest(decoding, BatchConfig(max_rows=5000), 5000, 100)[-1]["setting"] == "replicas"


def test_replicas_against_partitions() -> None:
    idle = {"measured": {"destination_busy": 0.3}}
    fewer, more = scale_out(2, 4, idle), scale_out(8, 2, idle)
    assert fewer is not None and fewer["suggested"] == 2 and "idle" in fewer["why"]
    assert more is not None and more["suggested"] == 8
    assert scale_out(8, 2, {"measured": {"destination_busy": 0.95}}) is None
    assert scale_out(0, 2, idle) is None


def chunk(start: int, rows: int) -> Chunk:
    return Chunk("p", {"offset": start} if start else None, {"offset": start + rows},
                 pa.table({"id": list(range(start, start + rows))}), (), rows)


async def cut(sizer: BatchSizer, sizes: list[int]) -> list[int]:
    queue = ChunkQueue()
    start = 0
    for rows in sizes:
        await queue.put(chunk(start, rows))
        start += rows
    await queue.put(END)
    return [b.records async for b in cut_batches(queue, sizer.batch, sizer=sizer)]


async def test_under_auto_a_batch_ends_nearest_its_size_never_past_the_limit() -> None:
    # Size 37,500 from chunks of 12,700 (a source's read size): 3 chunks (38,100) are nearer than 2.
    sizer = BatchSizer(auto(initial_rows=37_500))
    assert await cut(sizer, [12_700] * 6) == [38_100, 38_100]
    # 2 chunks (25,400) are nearer to 30,000 than 3.
    assert await cut(BatchSizer(auto(initial_rows=30_000)), [12_700] * 4) == [25_400, 25_400]
    # Never past max_rows_limit.
    assert await cut(BatchSizer(auto(initial_rows=37_500, max_rows_limit=37_500)), [12_700] * 4) == [25_400, 25_400]
    # A fixed size is a limit, as before.
    assert await cut(BatchSizer(BatchConfig(max_rows=37_500)), [12_700] * 6) == [25_400] * 3


async def test_the_read_ahead_follows_the_size() -> None:
    sizer = BatchSizer(auto(initial_rows=500))
    queue = ChunkQueue(max_records=lambda: 2 * sizer.limit)
    await queue.put(chunk(0, 1000))
    assert queue.full()
    run(sizer, Destination(0.01, 1e-6), 1)
    assert sizer.limit == 2000 and not queue.full()


def test_one_slow_commit_among_steady_ones_does_not_shrink_the_size_two_do() -> None:
    sizer = BatchSizer(auto(initial_rows=100_000, target_latency="1s"))
    timings = Timings()
    for _ in range(3):
        sizer.observe(100_000, 10_000_000, 0.9, timings)
    sizer.observe(100_000, 10_000_000, 3.0, timings)  # a checkpoint on the server, a busy machine
    assert sizer.limit == 100_000
    sizer.observe(100_000, 10_000_000, 3.0, timings)
    assert sizer.limit == 50_000


def test_a_source_whose_chunk_size_cannot_be_set_keeps_its_own() -> None:
    class Fixed:
        @property
        def max_rows(self) -> int:
            return 1000

    sizer = BatchSizer(auto(initial_rows=500), source=Fixed())
    run(sizer, Destination(0.01, 1e-6), 3)
    assert sizer.limit > 500 and sizer.source is None


def test_a_size_a_little_small_is_left_alone_unless_the_destination_is_the_limit() -> None:
    # No commit stage measured: 1µs a row and a 2s target make the floor size 200,000, and
    # 60,000 is between a quarter and a half of it.
    busy = observed(60_000, 0.06, {}, 60_000)
    assert [s["suggested"] for s in suggest(busy, BatchConfig(max_rows=60_000), 60_000, 100)] == [200_000]
    idle = [Observation(60_000, 6_000_000, 0.06, {"poll": 0.5}, 60_000, float(i)) for i in range(5)]
    assert [s["setting"] for s in suggest(idle, BatchConfig(max_rows=60_000), 60_000, 100)] == ["source poll size"]
    tiny = [Observation(500, 50_000, 0.0005, {"poll": 0.5}, 500, float(i)) for i in range(5)]
    assert [s["setting"] for s in suggest(tiny, BatchConfig(max_rows=500), 500, 100)] == ["batch.max_rows",
                                                                                          "source poll size"]
