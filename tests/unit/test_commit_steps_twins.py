"""The in-memory twins themselves (`conduitd.testing`): the source's positions, tombstones, daemon
mode, resync and failure on cue; the destination's strictness (what it calls a contract
violation); and a real pipeline over both, crashed at chosen points and run again, ending with
every record exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import Config, FileSourceConfig, PipelineConfig, SqliteDestinationConfig
from conduitd.core.records import Chunk, Position
from conduitd.destinations.base import Capabilities, RowsRefused
from conduitd.errors import ConduitError, TransientError, leaves
from conduitd.ops.metrics import Metrics
from conduitd.runtime import pipeline as pipeline_module
from conduitd.runtime.commit import Committer
from conduitd.sources.base import FixedCheckpoints
from conduitd.testing import (
    ContractViolation,
    Crash,
    FailAt,
    Faults,
    MemoryDestination,
    MemoryFeed,
    MemorySource,
    MemoryStore,
    Tombstone,
)
from conduitd.testing.memory_source import Record
from conduitd.testing.scenario import batch, chunk


async def read(source: MemorySource, positions: dict[str, Position] | None = None) -> list[Chunk]:
    return [c async for c in source.chunks(FixedCheckpoints(positions), asyncio.Event())]


# -- the source -------------------------------------------------------------------------------------

def test_the_memory_source_counts_records_and_decodes_them_as_conduitd_does() -> None:
    feed = MemoryFeed({"p": [{"id": 1}, b"[1, 2]", Tombstone({"id": 1}), '{"id": 2}']})
    (first, second) = asyncio.run(read(MemorySource(feed, max_rows=3)))
    assert (first.start, first.end, second.start, second.end) == (None, {"offset": 3}, {"offset": 3}, {"offset": 4})
    assert first.rows.to_pylist() == [{"id": 1}, {"id": 1}] and first.deletes is not None
    assert first.deletes.tolist() == [False, True] and first.row_offsets is not None
    assert first.row_offsets.tolist() == [0, 2]
    assert [(r.position, r.payload) for r in first.rejects] == [({"offset": 1}, "[1, 2]")]
    assert second.rows.to_pylist() == [{"id": 2}]
    with pytest.raises(ValueError, match="line break"):
        feed.append("p", b"{}\n{}")


def test_the_memory_source_fails_at_the_chosen_chunk_and_resumes_after_the_committed_position() -> None:
    feed = MemoryFeed({"p": [{"id": i} for i in range(6)]})
    source = MemorySource(feed, max_rows=2, fail_at=2, error=Crash)
    handed: list[Chunk] = []

    async def run() -> None:
        async for c in source.chunks(FixedCheckpoints(), asyncio.Event()):
            handed.append(c)
    with pytest.raises(Crash):
        asyncio.run(run())
    assert [c.end for c in handed] == [{"offset": 2}]
    resumed = asyncio.run(read(MemorySource(feed, max_rows=2), {"p": handed[-1].end}))
    assert [r["id"] for c in resumed for r in c.rows.to_pylist()] == [2, 3, 4, 5]


def test_the_memory_source_waits_for_records_in_daemon_mode_and_resyncs_from_the_committed_position() -> None:
    async def run() -> None:
        feed = MemoryFeed({"p": [{"id": 0}]})
        source = MemorySource(feed, once=False, max_rows=10)
        stored, stop = FixedCheckpoints(), asyncio.Event()
        chunks = source.chunks(stored, stop)
        assert (await anext(chunks)).end == {"offset": 1}
        waiting = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0)  # the source is waiting for records now
        feed.append("p", {"id": 1})
        assert (await waiting).start == {"offset": 1}
        assert await source.resync()
        stored.positions = {"p": {"offset": 1}}  # another owner committed up to here
        feed.append("p", {"id": 2})
        again = await anext(chunks)
        assert (again.epoch, again.start, again.rows.to_pylist()) == (1, {"offset": 1}, [{"id": 1}, {"id": 2}])
        stop.set()
        feed.append("p", {"id": 3})
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
    asyncio.run(run())


# -- the destination and the faults -------------------------------------------------------------------

APPEND = PipelineConfig(name="events", source="s", destination="d", table="events")


async def opened(**options: Any) -> MemoryDestination:
    d = MemoryDestination(**options)
    await d.open()
    await d.setup(APPEND)
    return d


def test_the_memory_destination_has_a_lifecycle_and_can_be_unreachable() -> None:
    async def run() -> None:
        d = MemoryDestination()
        with pytest.raises(RuntimeError, match="not open"):
            await d.load_checkpoints("x")
        await d.open()
        with pytest.raises(RuntimeError, match="already open"):
            await d.open()
        await d.close()
        await d.close()
        with pytest.raises(ConduitError, match="unreachable") as caught:
            await MemoryDestination(unreachable=True).open()
        assert caught.value.exit_code == 5
    asyncio.run(run())


def test_the_memory_destination_calls_contract_violations_what_a_database_would_refuse_or_lose() -> None:
    async def run() -> None:
        d = await opened(refuse=lambda t, row: "no" if row["id"] == 2 else None)
        await Committer(d, APPEND).commit(await Committer(d, APPEND).prepare(
            batch(chunk("p", None, {"offset": 1}, [{"id": 1}]))))
        rows = pa.table({"id": [2]})
        columns = list((await d.table_columns("events") or {}).values())
        with pytest.raises(ContractViolation, match="aborted"):  # a refusal not rolled back to a savepoint
            async with d.transaction() as tx:
                with pytest.raises(RowsRefused):
                    await tx.write_rows("events", rows, columns, ())
        with pytest.raises(ContractViolation, match="payload"):
            async with d.transaction() as tx:
                await tx.write_rows("events", pa.table({"id": [3]}), columns, (), d.dialect.encode(rows, columns))
        plain = await opened(capabilities=Capabilities(True, False, False, True, True))
        with pytest.raises(ContractViolation, match="savepoint"):
            async with plain.transaction() as tx, tx.savepoint():
                pass
        assert [r["id"] for r in d.store.rows("events")] == [1]
        assert d.store.rollbacks == 2
    asyncio.run(run())


def test_faults_count_the_steps_and_fire_once() -> None:
    faults = Faults(FailAt("write_rows", call=2, error=TransientError))
    for step in ("begin", "write_rows", "compare_and_set"):
        faults.step(step)
    with pytest.raises(TransientError, match="write_rows"):
        faults.step("write_rows")
    faults.step("write_rows")  # fired once: behaves again
    assert not faults.armed and [s for s, _ in faults.fired] == ["write_rows"]
    assert faults.trace == ["begin", "write_rows", "compare_and_set", "write_rows", "write_rows"]
    with pytest.raises(ValueError, match="unknown step"):
        FailAt("write_row")


# -- a pipeline over the twins, crashed and run again ---------------------------------------------------

PIPELINE = PipelineConfig.model_validate({"name": "events", "source": "s", "destination": "d", "table": "events",
                                          "mode": "upsert", "unique_key": ["id"],
                                          "batch": {"max_rows": 3, "max_wait": "1s"}})
CONFIG = Config(sources=(FileSourceConfig(name="s", type="file", path="unused"),),
                destinations=(SqliteDestinationConfig(name="d", type="sqlite", path="unused"),),
                resources=(PIPELINE,))


def records(partition: int) -> list[Record]:
    return [b"not json" if i == 4 else {"id": 10 * partition + i, "v": i} for i in range(8)]


async def run_pipeline(monkeypatch: pytest.MonkeyPatch, store: MemoryStore, feed: MemoryFeed, *,
                       source: dict[str, Any] | None = None, destination: dict[str, Any] | None = None) -> None:
    monkeypatch.setattr(pipeline_module, "make_destination", lambda config: MemoryDestination(store, **(destination
                                                                                                        or {})))
    monkeypatch.setattr(pipeline_module, "open_source", lambda config, pipeline, service, once: MemorySource(
        feed, once=once, max_rows=pipeline.batch.max_rows, **(source or {})))
    await pipeline_module.Pipeline(CONFIG, PIPELINE, Metrics(), once=True).run(asyncio.Event())


def test_a_pipeline_crashed_at_chosen_points_and_run_again_holds_every_record_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, feed = MemoryStore(), MemoryFeed({"p0": records(0), "p1": records(1)})

    async def run() -> None:
        with pytest.raises(BaseExceptionGroup) as crashed:  # killed in the middle of a COMMIT
            await run_pipeline(monkeypatch, store, feed, destination={"fail_at": FailAt("commit", 2, Crash)})
        assert any(isinstance(e, Crash) for e in leaves(crashed.value))
        with pytest.raises(BaseExceptionGroup) as failed:  # the source fails on its 3rd chunk
            await run_pipeline(monkeypatch, store, feed, source={"fail_at": 3, "error": ConduitError})
        assert any(isinstance(e, ConduitError) for e in leaves(failed.value))
        # A retriable failure is retried in the pipeline (one backoff), and the run ends.
        await run_pipeline(monkeypatch, store, feed, destination={"fail_at": FailAt("compare_and_set", 1)})
    asyncio.run(run())
    assert sorted(r["id"] for r in store.rows("events")) == [i for p in (0, 10) for i in range(p, p + 8) if i % 10 != 4]
    assert sorted(e.payload for e in store.dlq("events_dlq")) == ["not json", "not json"]
    assert store.checkpoints("events") == {"p0": {"offset": 8}, "p1": {"offset": 8}}
