"""Every step of the commit protocol (`conduitd.runtime.commit`), failed on cue with the in-memory
destination: a failure at any step leaves nothing committed (rows, DLQ rows, schema history,
checkpoints, columns), and the retry the pipeline makes (the same prepared batch) commits it
exactly once, as a run that never failed does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import PipelineConfig
from conduitd.core.records import Batch
from conduitd.destinations.base import DlqFilter, RowsRefused
from conduitd.errors import ConduitError, TransientError
from conduitd.runtime.commit import Committer
from conduitd.testing import ANY, Crash, MemoryDestination, MemoryDlqSink, MemoryStore, State
from conduitd.testing.memory_source import Record, Tombstone, decode
from conduitd.testing.scenario import batch, chunk, malformed

PIPELINE = PipelineConfig(name="orders", source="s", destination="d", table="orders", mode="upsert",
                          unique_key=("id",))
REFUSED = "refuse me"
ERRORS: list[type[BaseException]] = [TransientError, Crash, asyncio.CancelledError]


def refuse(table: str, row: Mapping[str, Any]) -> str | None:
    return "the destination refuses this name" if row.get("name") == REFUSED else None


def first_batch() -> Batch:
    return batch(chunk("p0", None, {"offset": 3}, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                       [malformed("p0", 2, "not json")]),
                 chunk("p1", None, {"offset": 2}, [{"id": 3, "name": "c"}, {"id": 4, "name": "d"}]))


def second_batch() -> Batch:
    """Every step has work: a new column, a delete, an update, a refused row, a malformed record."""
    return batch(chunk("p0", {"offset": 3}, {"offset": 6}, [{"id": 5, "name": "e", "score": 1.5},
                                                           {"id": 3, "name": "c2", "score": None},
                                                           {"id": 6, "name": REFUSED, "score": 2.0}]),
                 chunk("p1", {"offset": 2}, {"offset": 4}, [{"id": 2}], [malformed("p1", 3, "also not json")],
                       deletes=[True]))


def destination(state: State | None = None, **options: Any) -> MemoryDestination:
    store = MemoryStore()
    if state is not None:
        store.state = state.copy()
    return MemoryDestination(store, **{"refuse": refuse, "screens": True, **options})


async def opened(**options: Any) -> MemoryDestination:
    d = destination(**options)
    await d.open()
    await d.setup(PIPELINE)
    return d


async def committed_first(**options: Any) -> MemoryDestination:
    d = await opened(**options)
    committer = Committer(d, PIPELINE)
    await committer.commit(await committer.prepare(first_batch()))
    return d


async def replayed(d: MemoryDestination) -> list[int]:
    return [int(e.id) for e in await d.read_dlq(PIPELINE, DlqFilter())]


async def reference(sink: MemoryDlqSink | None = None) -> tuple[State, list[str]]:
    """The second batch committed by a run that never fails: the state, and the steps it ran."""
    d = await committed_first()
    committer = Committer(d, PIPELINE, sink)
    d.faults.clear()
    await committer.commit(await committer.prepare(second_batch(), await replayed(d)))
    return d.store.snapshot(), list(d.faults.trace)


STEPS = [  # (protocol step, Transaction step, which call of it)
    ("BEGIN", "begin", 1),
    ("1 remove the replayed DLQ rows", "delete_rejects", 1),
    ("2 check the table", "table_columns", 1),
    ("3 schema DDL", "run_ddl", 1),
    ("3 schema history", "record_changes", 1),
    ("4 deletes", "delete_rows", 1),
    ("5 savepoint", "savepoint", 1),
    ("5 write rows", "write_rows", 1),
    ("5 screen the refused rows", "screen_rows", 1),
    ("5 savepoint of the rest", "savepoint", 2),
    ("5 write the rest", "write_rows", 2),
    ("6 DLQ rows", "write_rejects", 1),
    ("7 compare-and-set p0", "compare_and_set", 1),
    ("7 compare-and-set p1", "compare_and_set", 2),
    ("COMMIT", "commit", 1),
]


def test_the_scenario_runs_every_step_in_the_protocol_order() -> None:
    _, trace = asyncio.run(reference())
    assert trace == ["begin", "delete_rejects", "table_columns", "run_ddl", "record_changes", "delete_rows",
                     "savepoint", "write_rows", "screen_rows", "savepoint", "write_rows", "write_rejects",
                     "compare_and_set", "compare_and_set", "commit"]
    calls: dict[str, int] = {}
    assert [(s, calls.__setitem__(s, calls.get(s, 0) + 1) or calls[s]) for s in trace] == \
        [(step, call) for _, step, call in STEPS]


def test_the_reference_run_commits_what_the_batch_says() -> None:
    state, _ = asyncio.run(reference())
    rows = sorted(state.tables["orders"].rows, key=lambda r: r["id"])
    assert rows == [{"id": 1, "name": "a", "score": None}, {"id": 3, "name": "c2", "score": None},
                    {"id": 4, "name": "d", "score": None}, {"id": 5, "name": "e", "score": 1.5}]
    assert [(e.partition, e.rule, e.payload) for e in state.dlq["orders_dlq"]] == [
        ("p1", "decode", "also not json"), ("p0", "refused", '{"id":6,"name":"refuse me","score":2.0}')]
    assert [(h.change.kind, h.change.column) for h in state.history] == [("create", None), ("add", "score")]
    assert {p: c.position for (_, p), c in state.checkpoints.items()} == {"p0": '{"offset":6}', "p1": '{"offset":4}'}


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize(("protocol_step", "step", "call"), STEPS, ids=[s[0] for s in STEPS])
def test_a_failure_at_a_step_leaves_nothing_committed_and_the_retry_commits_once(
        protocol_step: str, step: str, call: int, error: type[BaseException]) -> None:
    async def run() -> None:
        expected, _ = await reference()
        d = await committed_first()
        before = d.store.snapshot()
        committer = Committer(d, PIPELINE)
        prepared = await committer.prepare(second_batch(), await replayed(d))
        d.faults.arm(step, call=call, error=error)
        with pytest.raises(error):
            await committer.commit(prepared)
        assert [s for s, _ in d.faults.fired] == [step]
        assert d.store.snapshot() == before, f"a failure at {protocol_step} left changes"
        await committer.commit(prepared)
        assert d.store.snapshot() == expected
        with pytest.raises(ConduitError):  # committed once: the same batch is refused now
            await committer.commit(prepared)
        assert d.store.snapshot() == expected
    asyncio.run(run())


@pytest.mark.parametrize(("failure", "after_write", "durable"), [
    ("the sink", False, False),  # nothing kept by the sink either
    ("the sink", True, True),    # kept by the sink, the error lost on the way back
    ("COMMIT", False, True),     # the sink wrote, then COMMIT failed
])
def test_a_failure_at_the_external_dlq_sink_or_after_it_commits_once_and_dead_letters_at_least_once(
        failure: str, after_write: bool, durable: bool) -> None:
    async def run() -> None:
        expected_sink = MemoryDlqSink()
        expected, trace = await reference(expected_sink)
        assert "write_rejects" not in trace  # rejects go to the sink, not to a DLQ table
        d = await committed_first()
        before = d.store.snapshot()
        sink = MemoryDlqSink()
        committer = Committer(d, PIPELINE, sink)
        prepared = await committer.prepare(second_batch(), await replayed(d))
        if failure == "COMMIT":
            d.faults.arm("commit", error=Crash)
        else:
            sink.fail_next(TransientError, after_write=after_write)
        with pytest.raises((TransientError, Crash)):
            await committer.commit(prepared)
        assert d.store.snapshot() == before
        assert len(sink.entries) == (2 if durable else 0)
        await committer.commit(prepared)
        assert d.store.snapshot() == expected
        # At least once: a repeat carries the id of the first, so `dlq list` shows each once.
        assert sorted(set(sink.ids())) == sorted(expected_sink.ids())
        assert len(sink.entries) == (4 if durable else 2)
    asyncio.run(run())


@pytest.mark.parametrize("step", ["delete_rows", "write_rejects"])
def test_a_refusal_outside_the_row_writes_fails_the_batch_as_a_conduit_error(step: str) -> None:
    async def run() -> None:
        d = await committed_first()
        before = d.store.snapshot()
        committer = Committer(d, PIPELINE)
        prepared = await committer.prepare(second_batch(), await replayed(d))
        d.faults.arm(step, error=RowsRefused("update or delete violates foreign key constraint"))
        try:
            with pytest.raises(ConduitError):
                await committer.commit(prepared)
        finally:
            assert d.store.snapshot() == before
    asyncio.run(run())


# -- generated batches, failed at a generated step ---------------------------------------------------

RECORDS = st.one_of(
    st.builds(lambda i, n, s: {"id": i, "name": n, **({"score": s} if s is not None else {})},
              st.integers(0, 6), st.sampled_from(["a", "b", REFUSED]), st.none() | st.floats(-9, 9)),
    st.builds(lambda i: Tombstone({"id": i}), st.integers(0, 6)),
    st.just(b'{"id": '),
)
PARTITIONS = st.dictionaries(st.sampled_from(["p0", "p1", "p2"]), st.lists(RECORDS, min_size=1, max_size=6),
                             min_size=1)


def generated(partitions: Mapping[str, Sequence[Record]], first: Mapping[str, int]) -> Batch:
    chunks = []
    for partition, records in sorted(partitions.items()):
        start = first.get(partition)
        chunks.append(decode(partition, start or 0, list(records), None if start is None else {"offset": start}, 0))
    return batch(*chunks)


@settings(max_examples=60)
@given(before=PARTITIONS, records=PARTITIONS, error=st.sampled_from(ERRORS),
       mode=st.sampled_from(["names_row", "anonymous", "partly"]), screens=st.booleans(), data=st.data())
def test_generated_batches_failed_at_any_step_commit_exactly_once(
        before: dict[str, list[Record]], records: dict[str, list[Record]], error: type[BaseException], mode: str,
        screens: bool, data: st.DataObject) -> None:
    async def run() -> None:
        options = {"refusal": mode, "screens": screens}
        d = await opened(**options)
        committer = Committer(d, PIPELINE)
        first = generated(before, {})
        await committer.commit(await committer.prepare(first))
        start = {p: int(end["offset"]) for p, end in first.end.items()}
        second = generated(records, start)
        clean = destination(d.store.state, **options)  # a run that never fails, from the same state
        await clean.open()
        clean_committer = Committer(clean, PIPELINE)
        await clean_committer.commit(await clean_committer.prepare(second))
        trace = clean.faults.trace
        call = data.draw(st.integers(1, len(trace)), label="failing step")
        before_state = d.store.snapshot()
        prepared = await committer.prepare(second)
        d.faults.arm(ANY, call=call, error=error)
        with pytest.raises(error):
            await committer.commit(prepared)
        assert d.store.snapshot() == before_state, f"a failure at {trace[call - 1]} left changes"
        await committer.commit(prepared)
        assert d.store.snapshot() == clean.store.snapshot()
    asyncio.run(run())
