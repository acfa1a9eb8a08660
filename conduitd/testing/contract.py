"""Contract tests for connectors: subclass, give the hooks, run pytest.

    from conduitd.testing.contract import DestinationContract

    class TestMyDestination(DestinationContract):
        def make_destination(self) -> Destination:
            return MyDestination(MyConfig(name="d", type="mine", path=str(self.tmp_path / "db")))

        async def read_rows(self, table: str) -> list[dict[str, Any]]:
            ...  # the table's rows, read your own way

`DestinationContract` proves: a new destination object resumes after the committed positions;
the compare-and-set refuses a stale start (and the whole batch with it); a crash or an error
between any two steps of the commit protocol loses and duplicates nothing, and a retry commits
exactly once; a row the destination refuses goes to the DLQ while the rest commits; secrets are
never in errors or logs. `SourceContract` proves: the chunks of a partition chain exactly;
a source resumes after the committed position with exactly the records after it; `once` ends;
malformed records come as rejects, never as exceptions.

The tests are plain functions that run their own event loop (no pytest plugin needed); every
hook may be overridden, and the ones that raise NotImplementedError must be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig
from conduitd.core.records import Chunk, Position, position_text
from conduitd.destinations.base import Destination, DlqFilter
from conduitd.destinations.sql import HISTORY
from conduitd.errors import CheckpointConflict, ConduitError, TransientError, describe
from conduitd.runtime.commit import Committer
from conduitd.sources.base import Leases, Source
from conduitd.testing import scenario
from conduitd.testing.faults import ANY, Crash, ErrorSpec, Faults, FaultyDestination

T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    """A batch with one row the destination refuses (`DestinationContract.refusal`)."""

    table: str
    before: Sequence[Mapping[str, Any]]
    """Rows committed first (e.g. the row whose key the refused one repeats)."""
    rows: Sequence[Mapping[str, Any]]
    """The batch under test: every row has an `id` and the same fields."""
    refused: int
    """The index in `rows` of the row the destination refuses."""
    screened: bool = False
    """The destination finds this row before writing (`Transaction.screen_rows`): it goes to the
    DLQ and the rest commits even without savepoints (else such a destination fails the batch)."""


@dataclass(frozen=True)
class SecretCase:
    """A destination whose config holds `secret` and that cannot connect (a wrong password, an
    unknown user, a port nothing listens on)."""

    make: Callable[[], Destination]
    secret: str


def cancel_the_task() -> BaseException:
    """A cancellation as `task.cancel()` from outside delivers it: the running task is cancelled
    (so its next suspension, e.g. in the ROLLBACK, is cancelled again) and CancelledError raised."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    return asyncio.CancelledError()


class _Logs(logging.Handler):
    """Every record logged while it is installed, at any level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.texts.append(text)


@asynccontextmanager
async def _capturing_logs() -> AsyncIterator[_Logs]:
    root, handler = logging.getLogger(), _Logs()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class _Contract:
    timeout = 120.0
    """Seconds a test may take before it fails (a guard against a hang, not a measure)."""

    tmp_path: Path
    """A fresh directory for each test."""

    @pytest.fixture(autouse=True)
    def _contract_tmp_path(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(self.timeout):
                return await work()
        return asyncio.run(bounded())


class DestinationContract(_Contract):
    """See the module docstring. Hooks: `make_destination` and `read_rows` (required),
    `schema_history`, `refusal`, `secret_cases`."""

    # -- hooks -----------------------------------------------------------------------------------

    def make_destination(self) -> Destination:
        """A new, closed destination; every call of one test must reach the same store (the same
        file, database schema...), so a second one sees what the first committed."""
        raise NotImplementedError("make_destination(): return a new, closed destination of yours")

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `table` as a dict of column name -> value, read your own way."""
        raise NotImplementedError("read_rows(table): return the table's rows")

    async def schema_history(self, pipeline: str) -> list[tuple[str, str | None]] | None:
        """The pipeline's schema history as (change, column) in order, or None if it cannot be
        read. By default: `read_rows` of the shared SQL table `conduitd_schema_history`."""
        rows = await self.read_rows(HISTORY)
        return [(r["change"], r["column_name"]) for r in sorted(rows, key=lambda r: r["id"])
                if r["pipeline"] == pipeline]

    async def refusal(self, destination: Destination) -> Refusal | None:
        """Prepare `destination` (open) to refuse one row, and describe the batch; None skips the
        test. By default: a table created through the dialect with primary key `id`, and an
        append batch that repeats an `id` already in it."""
        dialect = destination.dialect
        columns = [dialect.column_for("id", pa.int64()), dialect.column_for("name", pa.string())]
        async with destination.transaction() as tx:
            await tx.run_ddl(dialect.create_table_ddl("refusals", columns, ["id"]))
        return Refusal("refusals", [{"id": 1, "name": "first"}],
                       [{"id": 2, "name": "two"}, {"id": 1, "name": "again"}, {"id": 3, "name": "three"}], 1)

    def secret_cases(self) -> Sequence[SecretCase]:
        """Destinations holding a secret that cannot connect; () skips the test (nothing secret)."""
        return ()

    # -- helpers ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def opened(self, faults: Faults | None = None) -> AsyncIterator[FaultyDestination]:
        destination = FaultyDestination(self.make_destination(), faults)
        await destination.open()
        try:
            yield destination
        finally:
            await destination.close()

    async def observe(self, destination: Destination, pipeline: PipelineConfig) -> scenario.Outcome:
        return await scenario.observe(destination, pipeline, self.read_rows, self.schema_history)

    # -- the tests -------------------------------------------------------------------------------

    def test_opening_twice_raises_and_closing_twice_is_harmless(self) -> None:
        async def work() -> None:
            destination = self.make_destination()
            await destination.open()
            try:
                with pytest.raises(Exception):  # noqa: B017 - the contract names no class
                    await destination.open()
                await destination.ping()
            finally:
                await destination.close()
            await destination.close()
        self.run(work)

    def test_a_new_destination_resumes_after_the_committed_positions(self) -> None:
        async def work() -> None:
            async with self.opened() as destination:
                upsert = destination.capabilities.upsert
                pipeline = scenario.scenario_pipeline("resume", upsert)
                other = scenario.scenario_pipeline("other", upsert)
                for res in (pipeline, other):
                    await destination.setup(res)
                    committer = Committer(destination, res)
                    for b in (scenario.first_batch(), scenario.second_batch(upsert)) if res is pipeline else \
                            (scenario.first_batch(),):
                        await committer.commit(await committer.prepare(b))
            async with self.opened() as again:
                assert await again.load_checkpoints("resume") == {"p0": {"offset": 5}, "p1": {"offset": 4}}
                assert await again.load_checkpoints("other") == {"p0": {"offset": 3}, "p1": {"offset": 2}}
                listed = [(c.pipeline, c.partition, position_text(c.position)) for c in await again.list_checkpoints()]
                assert sorted(listed) == sorted([("other", "p0", '{"offset":3}'), ("other", "p1", '{"offset":2}'),
                                                 ("resume", "p0", '{"offset":5}'), ("resume", "p1", '{"offset":4}')])
                assert await again.load_checkpoints("never") == {}
                assert await again.reset_checkpoints("resume", "p0") == 1
                assert await again.load_checkpoints("resume") == {"p1": {"offset": 4}}
                assert await again.reset_checkpoints("other") == 2
                assert await again.load_checkpoints("other") == {}
        self.run(work)

    def test_the_compare_and_set_refuses_a_stale_start_and_the_whole_batch_with_it(self) -> None:
        async def work() -> None:
            pipeline = PipelineConfig(name="stale", source="s", destination="d", table="stale")
            b = scenario.batch
            c = scenario.chunk
            async with self.opened() as destination:
                await destination.setup(pipeline)
                committer = Committer(destination, pipeline)
                await committer.commit(await committer.prepare(b(c("p0", None, {"offset": 1}, [{"id": 1}]))))
                stale = [b(c("p0", None, {"offset": 2}, [{"id": 2}])),
                         b(c("p0", {"offset": 0}, {"offset": 2}, [{"id": 2}])),
                         b(c("p1", None, {"offset": 1}, [{"id": 3}]), c("p0", None, {"offset": 2}, [{"id": 2}]))]
                for each in stale:
                    with pytest.raises(CheckpointConflict):
                        await committer.commit(await committer.prepare(each))
                    assert await destination.load_checkpoints("stale") == {"p0": {"offset": 1}}
                    assert [r["id"] for r in await self.read_rows("stale")] == [1]
                await committer.commit(await committer.prepare(b(c("p0", {"offset": 1}, {"offset": 2}, [{"id": 2}]))))
                assert sorted(r["id"] for r in await self.read_rows("stale")) == [1, 2]
                assert await destination.load_checkpoints("stale") == {"p0": {"offset": 2}}
        self.run(work)

    @pytest.mark.parametrize("error", [TransientError, Crash, cancel_the_task],
                             ids=["exception", "crash", "cancellation"])
    def test_a_failure_between_any_two_steps_loses_and_duplicates_nothing(self, error: ErrorSpec) -> None:
        async def work() -> None:
            faults = Faults()
            async with self.opened(faults) as destination:
                trace = await self._steps_of_the_second_batch(destination, faults)
                for call, step in enumerate(trace, start=1):
                    await self._fail_at(destination, faults, call, step, error)
        self.run(work)

    async def _steps_of_the_second_batch(self, destination: FaultyDestination, faults: Faults) -> list[str]:
        upsert = destination.capabilities.upsert
        pipeline = scenario.scenario_pipeline("steps", upsert)
        await destination.setup(pipeline)
        committer = Committer(destination, pipeline)
        await committer.commit(await committer.prepare(scenario.first_batch()))
        replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
        faults.clear()
        await committer.commit(await committer.prepare(scenario.second_batch(upsert), replay))
        trace = list(faults.trace)
        assert trace[0] == "begin" and trace[-1] == "commit", trace
        return trace

    async def _fail_at(self, destination: FaultyDestination, faults: Faults, call: int, step: str,
                       error: ErrorSpec) -> None:
        upsert = destination.capabilities.upsert
        pipeline = scenario.scenario_pipeline(f"fail_{call}", upsert)
        await destination.setup(pipeline)
        committer = Committer(destination, pipeline)
        await committer.commit(await committer.prepare(scenario.first_batch()))
        first = await self.observe(destination, pipeline)
        assert _comparable(first, scenario.EXPECTED_AFTER_FIRST) == scenario.EXPECTED_AFTER_FIRST
        replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
        prepared = await committer.prepare(scenario.second_batch(upsert), replay)
        faults.clear()
        faults.arm(ANY, call=call, error=error)
        attempt = asyncio.ensure_future(committer.commit(prepared))  # a task of its own: it may be cancelled
        with pytest.raises((ConduitError, Crash, asyncio.CancelledError)):
            await attempt
        assert [s for s, _ in faults.fired] == [step], f"no failure at step {call} ({step}): {faults.trace}"
        failed = await self.observe(destination, pipeline)
        if not destination.capabilities.transactional_ddl:
            # The schema changes commit on their own before the batch (DDL would outlive its
            # rollback): the columns and their history may be there already.
            failed = dataclasses.replace(failed, columns=first.columns, history=first.history)
        assert failed == first, f"a failure at step {call} ({step}) left changes"
        await committer.commit(prepared)  # the retry, as the pipeline makes it: the same prepared batch
        second = await self.observe(destination, pipeline)
        expected = scenario.EXPECTED_AFTER_SECOND if upsert else scenario.EXPECTED_AFTER_SECOND_APPENDED
        assert _comparable(second, expected) == expected, f"after a failure at step {call} ({step}) and a retry"
        assert second.checkpoints == {"p0": '{"offset":5}', "p1": '{"offset":4}'}
        # Once committed, the batch is refused (its replayed DLQ rows are gone, its start is stale).
        with pytest.raises(ConduitError):
            await committer.commit(prepared)
        assert await self.observe(destination, pipeline) == second

    def test_a_refused_row_goes_to_the_dlq_and_the_rest_commits(self) -> None:
        async def work() -> None:
            async with self.opened() as destination:
                case = await self.refusal(destination)
                if case is None:
                    pytest.skip("the destination gives no row it refuses (refusal() returned None)")
                await self._refusal(destination, case)
        self.run(work)

    async def _refusal(self, destination: Destination, case: Refusal) -> None:
        pipeline = PipelineConfig(name="refusal", source="s", destination="d", table=case.table)
        await destination.setup(pipeline)
        committer = Committer(destination, pipeline)
        first, end = len(case.before), len(case.before) + len(case.rows)
        await committer.commit(await committer.prepare(
            scenario.batch(scenario.chunk("p0", None, {"offset": first}, case.before))))
        refusing = scenario.batch(scenario.chunk("p0", {"offset": first}, {"offset": end}, case.rows))
        before_ids = sorted(r["id"] for r in case.before)
        if not destination.capabilities.savepoints and not case.screened:
            # A refused row cannot be taken out of the transaction: the whole batch fails.
            with pytest.raises(ConduitError):
                await committer.commit(await committer.prepare(refusing))
            assert await destination.load_checkpoints("refusal") == {"p0": {"offset": first}}
            assert sorted(r["id"] for r in await self.read_rows(case.table)) == before_ids
            return
        await committer.commit(await committer.prepare(refusing))
        entries = await destination.read_dlq(pipeline, DlqFilter())
        if not entries:
            pytest.skip("the destination wrote the row the default refusal() expects refused (a repeated primary "
                        "key): override refusal() with a row it refuses")
        assert [(e.rule, e.partition) for e in entries] == [("refused", "p0")]
        assert orjson.loads(entries[0].payload or "null") == dict(case.rows[case.refused])
        expected = before_ids + [r["id"] for i, r in enumerate(case.rows) if i != case.refused]
        assert sorted(r["id"] for r in await self.read_rows(case.table)) == sorted(expected)
        assert await destination.load_checkpoints("refusal") == {"p0": {"offset": end}}

    def test_secrets_are_never_in_errors_or_logs(self) -> None:
        cases = self.secret_cases()
        if not cases:
            pytest.skip("no secret_cases(): the destination holds no secret")

        async def work() -> None:
            for case in cases:
                await self._secret(case)
        self.run(work)

    async def _secret(self, case: SecretCase) -> None:
        caught: BaseException | None = None
        async with _capturing_logs() as logs:
            destination = case.make()
            try:
                await destination.open()
                await destination.ping()
            except Exception as exc:  # noqa: BLE001 - judged below
                caught = exc
            finally:
                await destination.close()
        assert caught is not None, "a SecretCase must describe a destination that cannot connect"
        assert isinstance(caught, ConduitError), f"a driver's exception left the destination: {caught!r}"
        texts = [str(caught), repr(caught), describe(caught), "".join(traceback.format_exception(caught)), *logs.texts]
        for text in texts:
            spelling = scenario.leaked(case.secret, text)
            assert spelling is None, f"the secret ({spelling!r}) is in: {text[:2000]}"


class SourceContract(_Contract):
    """See the module docstring. Hooks: `make_source` and `write` (required), `write_malformed`.
    The tests write records `{"id": n, "name": "record n"}` in increasing `n`; `write` may spread
    them over partitions, keeping their order within each."""

    max_rows = 2
    """Rows per chunk asked of the sources (small: a few records make several chunks)."""
    records = 7
    """Records each test writes."""

    # -- hooks -----------------------------------------------------------------------------------

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        """A new source reading what `write` wrote (every call of one test reads the same data)."""
        raise NotImplementedError("make_source(once=..., max_rows=...): return a new source of yours")

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append the records to what the sources read."""
        raise NotImplementedError("write(records): append records to your source's data")

    async def write_malformed(self) -> bool:
        """Append one malformed record (one that cannot be decoded); False skips the test."""
        return False

    # -- helpers ---------------------------------------------------------------------------------

    async def read(self, committed: Mapping[str, Position] | None = None, *, max_rows: int | None = None
                   ) -> list[Chunk]:
        """Everything a `once` source hands over, from `committed`; each chunk is acknowledged as
        it comes (a source may wait for that before it ends)."""
        source = self.make_source(once=True, max_rows=max_rows or self.max_rows)
        stored = _Committed(committed or {})
        chunks: list[Chunk] = []
        try:
            async for chunk in source.chunks(stored, asyncio.Event()):
                chunks.append(chunk)
                await source.acknowledge({chunk.partition: chunk.end})
        finally:
            await source.close()
        return chunks

    def ids(self, chunks: Sequence[Chunk]) -> list[int]:
        return [int(i) for c in chunks for i in (c.rows.column("id").to_pylist() if c.rows.num_rows else [])]

    def by_partition(self, chunks: Sequence[Chunk]) -> dict[str, list[Chunk]]:
        found: dict[str, list[Chunk]] = {}
        for c in chunks:
            found.setdefault(c.partition, []).append(c)
        return found

    async def write_numbered(self, first: int, count: int) -> list[int]:
        await self.write([{"id": n, "name": f"record {n}"} for n in range(first, first + count)])
        return list(range(first, first + count))

    # -- the tests -------------------------------------------------------------------------------

    def test_the_chunks_of_a_partition_chain_exactly(self) -> None:
        async def work() -> None:
            written = await self.write_numbered(0, self.records)
            chunks = await self.read()
            assert sorted(self.ids(chunks)) == written, "every record exactly once"
            for partition, theirs in self.by_partition(chunks).items():
                assert theirs[0].start is None, f"{partition}: nothing committed, yet its first chunk starts later"
                for before, after in itertools.pairwise(theirs):
                    assert position_text(after.start) == position_text(before.end), f"{partition}: a gap or overlap"
                ids = self.ids(theirs)
                assert ids == sorted(ids), f"{partition}: records out of order"
            for c in chunks:
                assert c.rows.num_rows <= self.max_rows, f"a chunk of {c.rows.num_rows} rows (max_rows {self.max_rows})"
                assert c.epoch == chunks[0].epoch
        self.run(work)

    def test_a_source_resumes_after_the_committed_position(self) -> None:
        async def work() -> None:
            await self.write_numbered(0, self.records)
            first = self.by_partition(await self.read())
            committed = {p: theirs[0].end for p, theirs in first.items()}
            expected = sorted(i for theirs in first.values() for i in self.ids(theirs[1:]))
            resumed = await self.read(committed)
            assert sorted(self.ids(resumed)) == expected, "not exactly the records after the committed positions"
            for partition, theirs in self.by_partition(resumed).items():
                assert position_text(theirs[0].start) == position_text(committed[partition])
            ends = {p: theirs[-1].end for p, theirs in first.items()}
            assert self.ids(await self.read(ends)) == [], "records again after their partition's last position"
            # What is written after a commit is read after it, and nothing before it.
            later = await self.write_numbered(self.records, 3)
            assert sorted(self.ids(await self.read(ends))) == later
        self.run(work)

    def test_once_ends_when_everything_that_existed_at_start_is_read(self) -> None:
        async def work() -> None:
            assert self.ids(await self.read()) == [], "an empty source handed over rows"
            written = await self.write_numbered(0, self.records)
            assert sorted(self.ids(await self.read())) == written
        self.run(work)

    def test_a_malformed_record_comes_as_a_reject_not_an_exception(self) -> None:
        async def work() -> None:
            await self.write_numbered(0, 2)
            if not await self.write_malformed():
                pytest.skip("write_malformed() wrote nothing (the source has no malformed records)")
            await self.write_numbered(2, 2)
            chunks = await self.read()
            assert sorted(self.ids(chunks)) == [0, 1, 2, 3]
            rejects = [r for c in chunks for r in c.rejects]
            assert len(rejects) == 1, rejects
            assert rejects[0].reason and rejects[0].partition in {c.partition for c in chunks}
            position_text(rejects[0].position)  # JSON, like every position
        self.run(work)


def _comparable(outcome: scenario.Outcome, expected: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """(rows, DLQ, history) of `outcome`; the expected history where the history cannot be read."""
    return outcome.rows, outcome.dlq, expected[2] if outcome.history is None else outcome.history


class _Committed:
    """The pipeline's side of a source, reduced to fixed committed positions."""

    leases: Leases | None = None

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        return []

    def __init__(self, positions: Mapping[str, Position]) -> None:
        self.positions = dict(positions)

    async def committed(self) -> dict[str, Position]:
        return dict(self.positions)

    async def revoke(self) -> None:
        return None


__all__ = ["DestinationContract", "Refusal", "SecretCase", "SourceContract"]
