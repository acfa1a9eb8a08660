"""The ClickHouse destination's effectively-once flush, embedded (chdb): a failure after each
step of a batch's flush (`flush.STEPS`), raised in the process or as a SIGKILL of it, leaves the
table as the previous batch left it (once recovery ran), and the retry commits the batch exactly
once; values of every type come back as written; upserts and deletes through FINAL. A server
(CLICKHOUSE_URL) is covered by the contract kit (`test_contract_clickhouse.py`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest

from conduitd.config import PipelineConfig
from conduitd.destinations.base import DlqFilter
from conduitd.destinations.clickhouse.books import BATCHES
from conduitd.destinations.clickhouse.destination import ClickHouseDestination
from conduitd.destinations.clickhouse.flush import STEPS
from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig
from conduitd.errors import ConduitError, ConfigError, SchemaIncompatible, TransientError
from conduitd.runtime.commit import Committer
from conduitd.testing import scenario
from tests.helpers.daemon import conduitd, write_config
from tests.integration.test_contract_clickhouse import read_table

pytest.importorskip("chdb")

ROOT = Path(__file__).resolve().parents[2]


def config(path: Path) -> ClickHouseDestinationConfig:
    return ClickHouseDestinationConfig(name="d", type="clickhouse", path=str(path), database="crash")


async def observe(destination: ClickHouseDestination, pipeline: PipelineConfig) -> scenario.Outcome:
    return await scenario.observe(destination, pipeline, lambda t: read_table(destination.config, t),
                                  lambda _: _none())


async def _none() -> None:
    return None


def _rows(outcome: scenario.Outcome) -> tuple[Any, Any]:
    return outcome.rows, outcome.dlq


async def _first(destination: ClickHouseDestination, name: str) -> tuple[PipelineConfig, Committer]:
    pipeline = scenario.scenario_pipeline(name)
    await destination.setup(pipeline)
    committer = Committer(destination, pipeline)
    await committer.commit(await committer.prepare(scenario.first_batch()))
    assert _rows(await observe(destination, pipeline)) == scenario.EXPECTED_AFTER_FIRST[:2]
    return pipeline, committer


def _fail_after(step: str, occurrence: int = 1) -> Any:
    """A hook failing after the `occurrence`-th run of `step` (the batch's schema changes flush
    first on their own: intent, history, done; then its data: intent, deletions, rows, ...)."""
    seen: list[str] = []

    def hook(name: str) -> None:
        seen.append(name)
        if name == step and seen.count(step) == occurrence:
            raise TransientError(f"injected after {step}")
    return hook


def test_a_failure_after_any_flush_step_before_the_checkpoint_leaves_nothing_and_the_retry_commits_once(
        tmp_path: Path) -> None:
    async def work() -> None:
        destination = ClickHouseDestination(config(tmp_path / "db"))
        await destination.open()
        try:
            for step in STEPS[:STEPS.index("checkpoints")]:
                pipeline, committer = await _first(destination, f"fail_{step}")
                first = await observe(destination, pipeline)
                replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
                prepared = await committer.prepare(scenario.second_batch(), replay)
                destination.after_step = _fail_after(step, 2 if step == "intent" else 1)
                with pytest.raises(TransientError):
                    await committer.commit(prepared)
                destination.after_step = None
                failed = await observe(destination, pipeline)
                assert (failed.rows, failed.dlq, failed.checkpoints) == (first.rows, first.dlq, first.checkpoints), step
                assert await committer.committed_already(prepared) is None
                await committer.commit(prepared)
                second = await observe(destination, pipeline)
                assert _rows(second) == scenario.EXPECTED_AFTER_SECOND[:2], step
                assert second.checkpoints == {"p0": '{"offset":5}', "p1": '{"offset":4}'}
                with pytest.raises(ConduitError):
                    await committer.commit(prepared)
        finally:
            await destination.close()
    asyncio.run(work())


def test_a_failure_after_the_checkpoint_insert_is_a_committed_batch(tmp_path: Path) -> None:
    async def work() -> None:
        destination = ClickHouseDestination(config(tmp_path / "db"))
        await destination.open()
        try:
            pipeline, committer = await _first(destination, "late")
            replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
            prepared = await committer.prepare(scenario.second_batch(), replay)
            destination.after_step = _fail_after("checkpoints")
            with pytest.raises(TransientError):
                await committer.commit(prepared)
            destination.after_step = None
            # As after a connection lost during COMMIT: the runtime asks, and the batch is not written again.
            assert await committer.committed_already(prepared) is not None
            assert _rows(await observe(destination, pipeline)) == scenario.EXPECTED_AFTER_SECOND[:2]
        finally:
            await destination.close()
    asyncio.run(work())


_KILLED = textwrap.dedent("""
    import asyncio, os, signal, sys
    from conduitd.destinations.base import DlqFilter
    from conduitd.destinations.clickhouse.destination import ClickHouseDestination
    from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig
    from conduitd.runtime.commit import Committer
    from conduitd.testing import scenario

    async def main() -> None:
        config = ClickHouseDestinationConfig(name="d", type="clickhouse", path=sys.argv[1], database="crash")
        destination = ClickHouseDestination(config)
        await destination.open()
        pipeline = scenario.scenario_pipeline("killed")
        await destination.setup(pipeline)
        committer = Committer(destination, pipeline)
        await committer.commit(await committer.prepare(scenario.first_batch()))
        replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
        prepared = await committer.prepare(scenario.second_batch(), replay)

        def kill(step: str) -> None:
            if step == sys.argv[2]:
                os.kill(os.getpid(), signal.SIGKILL)
        destination.after_step = kill
        await committer.commit(prepared)

    asyncio.run(main())
""")


def test_a_sigkill_between_the_rows_and_the_checkpoint_is_undone_on_restart_and_the_batch_commits_once(
        tmp_path: Path) -> None:
    path, step = tmp_path / "db", "replays"  # after the rows, the DLQ rows and the replays: all are undone
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _KILLED, str(path), step], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    async def work() -> None:
        pipeline = scenario.scenario_pipeline("killed")
        # What a reader sees before the pipeline restarts: the interrupted batch's rows (row 5 among them).
        seen = sorted(r["id"] for r in await read_table(config(path), pipeline.table_name))
        assert seen == [1, 3, 4, 5], seen
        destination = ClickHouseDestination(config(path))
        await destination.open()
        try:
            # The pipeline restarts: loading its checkpoints settles the interrupted batch.
            assert await destination.load_checkpoints("killed") == {"p0": {"offset": 3}, "p1": {"offset": 2}}
            assert _rows(await observe(destination, pipeline)) == scenario.EXPECTED_AFTER_FIRST[:2]
            states = await destination.books.client.rows(
                f"SELECT argMax(state, version) AS s FROM {destination.books.table(BATCHES)} "
                "WHERE pipeline = 'killed' GROUP BY batch ORDER BY s")
            final_states = [s[0] for s in states]
            assert set(final_states) == {"aborted", "done"} and final_states.count("aborted") == 1
            committer = Committer(destination, pipeline)
            replay = [int(e.id) for e in await destination.read_dlq(pipeline, DlqFilter())]
            await committer.commit(await committer.prepare(scenario.second_batch(), replay))
            assert _rows(await observe(destination, pipeline)) == scenario.EXPECTED_AFTER_SECOND[:2]
            assert await destination.load_checkpoints("killed") == {"p0": {"offset": 5}, "p1": {"offset": 4}}
        finally:
            await destination.close()
    asyncio.run(work())


def test_values_of_every_type_come_back_as_written_and_upserts_read_through_final(tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
    rows = [{"id": 1, "name": "ünï 'quoted' \\ back`tick", "score": -2.5, "at": when, "day": date(2026, 3, 1),
             "ok": True, "amount": Decimal("12345.678901"), "tags": ["a", "b"]},
            {"id": 2, "name": None, "score": None, "at": None, "day": None, "ok": None, "amount": None, "tags": None}]
    pipeline = PipelineConfig(name="types", source="s", destination="d", table="types", mode="upsert",
                              unique_key=("id",))

    async def work() -> None:
        destination = ClickHouseDestination(config(tmp_path / "db"))
        await destination.open()
        try:
            await destination.setup(pipeline)
            committer = Committer(destination, pipeline)
            await committer.commit(await committer.prepare(
                scenario.batch(scenario.chunk("p0", None, {"offset": 2}, rows))))
            await committer.commit(await committer.prepare(scenario.batch(
                scenario.chunk("p0", {"offset": 2}, {"offset": 4}, [{"id": 2, "name": "two"}, {"id": 1}],
                               deletes=[False, True]))))
            got = {r["id"]: r for r in await read_table(destination.config, "types")}
            assert list(got) == [2], got  # row 1 deleted, row 2 replaced (columns the batch lacks are null)
            assert got[2]["name"] == "two" and got[2]["score"] is None
        finally:
            await destination.close()

        destination = ClickHouseDestination(config(tmp_path / "db2"))
        await destination.open()
        try:
            append = PipelineConfig(name="typed", source="s", destination="d", table="typed")
            await destination.setup(append)
            committer = Committer(destination, append)
            await committer.commit(await committer.prepare(scenario.batch(scenario.chunk("p0", None, {"o": 2}, rows))))
            # The table was created for appends: an upsert pipeline on it is refused, nothing written.
            upsert = append.model_copy(update={"name": "typed_upsert", "mode": "upsert", "unique_key": ("id",)})
            await destination.setup(upsert)
            with pytest.raises(ConfigError, match="not a ReplacingMergeTree"):
                await Committer(destination, upsert).commit(await Committer(destination, upsert).prepare(
                    scenario.batch(scenario.chunk("p0", None, {"o": 1}, rows[:1]))))
            assert await destination.load_checkpoints("typed_upsert") == {}
            got = sorted(await read_table(destination.config, "typed"), key=lambda r: r["id"])
            assert got[0]["name"] == rows[0]["name"] and got[0]["score"] == -2.5 and got[0]["ok"] is True
            assert got[0]["at"] == when and got[0]["day"] == date(2026, 3, 1)
            assert Decimal(str(got[0]["amount"])) == Decimal("12345.678901")
            assert got[0]["tags"] == '["a","b"]'
            assert all(got[1][k] is None for k in ("name", "score", "at", "day", "ok", "amount", "tags"))
        finally:
            await destination.close()
    asyncio.run(work())


def test_file_to_clickhouse_append_and_upsert_through_the_command(tmp_path: Path) -> None:
    events, changes = tmp_path / "events.jsonl", tmp_path / "changes.jsonl"
    appended = [{"id": 1000 + n, "name": f"event {n}", "score": n / 4} for n in range(300)]
    upserts = [{"id": n % 40, "name": f"key {n % 40} v{n // 40}", "score": float(n)} for n in range(300)]
    events.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in appended))
    changes.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in upserts))
    db = config(tmp_path / "olap")
    path = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "events", "type": "file", "path": str(events)},
                    {"name": "changes", "type": "file", "path": str(changes)}],
        "destinations": [{"name": "olap", "type": "clickhouse", "path": db.path, "database": db.database}],
        "resources": [
            {"name": "appends", "source": "events", "destination": "olap", "table": "appended",
             "batch": {"max_rows": 100}},
            {"name": "upserts", "source": "changes", "destination": "olap", "table": "upserted",
             "mode": "upsert", "unique_key": ["id"], "batch": {"max_rows": 100}}]})
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    expected_upserts = sorted((r["id"], r["name"], r["score"]) for r in {r["id"]: r for r in upserts}.values())

    def check() -> None:
        rows = asyncio.run(read_table(db, "appended"))
        assert sorted((r["id"], r["name"], r["score"]) for r in rows) == [(r["id"], r["name"], r["score"])
                                                                          for r in appended]
        assert sorted((r["id"], r["name"], r["score"]) for r in asyncio.run(read_table(db, "upserted"))) == \
            expected_upserts

    for _ in range(2):  # the second run finds nothing new and writes nothing
        done = conduitd("run", "--once", "-c", str(path), env=env, timeout=180)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        check()


def test_driver_errors_leave_translated_by_their_code(tmp_path: Path) -> None:
    async def work() -> None:
        destination = ClickHouseDestination(config(tmp_path / "db"))
        await destination.open()
        try:
            with pytest.raises(SchemaIncompatible, match="Code: 60"):  # UNKNOWN_TABLE
                await destination.books.client.rows("SELECT * FROM crash.nowhere")
            with pytest.raises(ConduitError) as syntax:
                await destination.books.client.command("SELEKT 1")
            assert type(syntax.value) is ConduitError and "Code: 62" in str(syntax.value)  # SYNTAX_ERROR
        finally:
            await destination.close()
    asyncio.run(work())


def test_a_read_only_destination_where_nothing_was_committed_has_no_checkpoints(tmp_path: Path) -> None:
    async def work() -> None:
        destination = ClickHouseDestination(config(tmp_path / "db"))
        await destination.open(read_only=True)  # `conduitd validate`: no table is created
        try:
            assert await destination.load_checkpoints("p") == {}
            assert await destination.list_checkpoints() == []
            assert await destination.table_columns("t") is None
            assert await destination.read_dlq(scenario.scenario_pipeline("p"), DlqFilter()) == []
        finally:
            await destination.close()
    asyncio.run(work())


def test_the_config_takes_exactly_one_of_path_and_url() -> None:
    for bad in ({}, {"path": "x", "url": "http://localhost:8123"}):
        with pytest.raises(pydantic.ValidationError, match="exactly one of `path`"):
            ClickHouseDestinationConfig.model_validate({"name": "d", "type": "clickhouse", **bad})
    server = ClickHouseDestinationConfig.model_validate({"name": "d", "type": "clickhouse", "url": "http://h:8123"})
    assert (server.database, server.user) == ("default", "default")
    with_login = ClickHouseDestinationConfig(name="d", type="clickhouse", url="https://u:pa55@h:8443")
    assert "pa55" not in with_login.where() and "h:8443" in with_login.where()
