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
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig
from conduitd.core.records import position_text
from conduitd.destinations.base import Destination, DlqFilter
from conduitd.destinations.sql import HISTORY
from conduitd.errors import CheckpointConflict, ConduitError, TransientError, describe
from conduitd.runtime.commit import Committer
from conduitd.testing import scenario
from conduitd.testing.contract_base import Contract
from conduitd.testing.faults import ANY, Crash, ErrorSpec, Faults, FaultyDestination
from conduitd.testing.source_contract import SourceContract


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


class DestinationContract(Contract):
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


def _comparable(outcome: scenario.Outcome, expected: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """(rows, DLQ, history) of `outcome`; the expected history where the history cannot be read."""
    return outcome.rows, outcome.dlq, expected[2] if outcome.history is None else outcome.history


__all__ = ["DestinationContract", "Refusal", "SecretCase", "SourceContract"]
