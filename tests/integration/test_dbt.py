"""`after_commit.dbt` with real dbt-core and dbt-postgres (1.11, in a cached venv made by
scripts/dbt_venv.sh) on the test PostgreSQL: a model built from the table conduitd just loaded
after a --once run, reported in the manifest, /status, metrics and a `dbt` event; a failing model
reported while the data stays committed; and dbt after commits in daemon mode with `every`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml

from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime
from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config
from tests.integration.test_alerts import alerts_config, receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dbt_executable() -> str:
    """The `dbt` of the cached venv; the script makes the venv on first use (a minute or so)."""
    made = subprocess.run(["bash", str(ROOT / "scripts" / "dbt_venv.sh")], capture_output=True, text=True,
                          timeout=900, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture
def dbt_env(pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """What tests/dbt_project/profiles.yml reads: the test PostgreSQL and this test's schema."""
    url = urlsplit(pg_dsn)
    env = {"CONDUITD_DBT_HOST": url.hostname or "127.0.0.1", "CONDUITD_DBT_PORT": str(url.port or 5432),
           "CONDUITD_DBT_USER": url.username or "postgres", "CONDUITD_DBT_PASSWORD": url.password or "",
           "CONDUITD_DBT_DBNAME": url.path.lstrip("/"), "CONDUITD_DBT_SCHEMA": pg_schema,
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env


def setup(tmp_path: Path, pg_dsn: str, schema: str, dbt: str, **settings: Any) -> Path:
    """A file source of orders into PostgreSQL with `after_commit.dbt`; the dbt project copied
    into tmp_path (dbt writes target/ and logs/ beside it)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(ROOT / "tests" / "dbt_project", project)
    (tmp_path / "in").mkdir()
    write_orders(tmp_path / "in" / "a.jsonl", range(1, 7))
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"manifest_path": str(tmp_path / "manifest.jsonl"), "drain_timeout": "20s"},
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / "*.jsonl")}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": pg_dsn, "schema": schema}],
        "resources": [{"name": "orders", "source": "files", "destination": "wh", "table": "orders",
                       "after_commit": {"dbt": {"project_dir": str(project), "profiles_dir": str(project),
                                                "executable": dbt, **settings}}}],
    })


def write_orders(path: Path, ids: range) -> None:
    with path.open("a") as handle:
        for i in ids:
            handle.write(json.dumps({"id": i, "status": "paid" if i % 2 else "new", "amount": i * 10}) + "\n")


async def fetch(pg_dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def test_once_builds_a_model_from_the_loaded_table(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                   dbt_executable: str, dbt_env: dict[str, str]) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, dbt_executable, command="build --select tag:orders")
    done = conduitd("run", "-c", str(config), "--once", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = asyncio.run(fetch(pg_dsn, f"SELECT status, orders, amount, rows_written_by_run, loaded_table "
                                     f"FROM {pg_schema}.orders_by_status ORDER BY status"))
    assert [tuple(r) for r in rows] == [("new", 3, 120, 6, f"{pg_schema}.orders"),
                                        ("paid", 3, 90, 6, f"{pg_schema}.orders")]
    [record] = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert record["status"] == "success" and record["exit_code"] == 0
    dbt = record["pipelines"][0]["dbt"]
    assert dbt["outcome"] == "success" and dbt["exit_code"] == 0 and dbt["trigger"] == "after_run"
    assert dbt["results"] == {"success": 1} and dbt["failures"] == []


async def run_in_process(config: Path, *, once: bool, until: Any = None) -> tuple[int, Runtime, list[dict[str, Any]]]:
    """Run the config's pipelines in this process; collect the `dbt` events. In daemon mode
    `until(runtime)` (awaited) decides when to stop."""
    runtime = Runtime(load_config(config), once=once)
    events: list[dict[str, Any]] = []
    with runtime.events.subscription() as queue:
        task = asyncio.create_task(runtime.run())
        if until is not None:
            await until(runtime)
            runtime.stop.set()
        code = await asyncio.wait_for(task, 120)
        while not queue.empty():
            event = queue.get_nowait()
            if event["kind"] == "dbt":
                events.append(event)
    return int(code), runtime, events


async def test_a_failing_model_is_reported_and_the_data_stays(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                              dbt_executable: str, dbt_env: dict[str, str]) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, dbt_executable, command="build --select tag:orders tag:broken")
    async with receiver() as hook:
        settings = yaml.safe_load(config.read_text())
        settings["alerts"] = alerts_config(hook.url)
        config.write_text(yaml.safe_dump(settings))
        code, runtime, events = await run_in_process(config, once=True)
    alerted = [d for d in hook.documents() if d["event"] == "dbt.failed"]
    assert [(d["status"], d["severity"], d["pipeline"]) for d in alerted] == [("firing", "warning", "orders")]
    assert "orders_broken" in alerted[0]["summary"] and "stays committed" in alerted[0]["summary"]

    assert code == 0  # fail_run_on_error is off: dbt's failure is reported, the run's outcome is the load's
    assert [r["n"] for r in await fetch(pg_dsn, f"SELECT count(*) AS n FROM {pg_schema}.orders")] == [6]
    [status] = runtime.statuses()
    assert status.state == "done" and status.dbt is not None and status.dbt["runs"] == 1
    last = status.dbt["last"]
    assert last["outcome"] == "failed" and last["exit_code"] == 1
    assert last["results"] == {"success": 1, "error": 1}
    assert [f["node"] for f in last["failures"]] == ["model.conduitd_test.orders_broken"]
    assert "no_such_column" in last["failures"][0]["message"]
    assert status.as_dict()["dbt"]["last"]["outcome"] == "failed"
    [event] = events
    assert event["pipeline"] == "orders" and event["outcome"] == "failed" and event["failures"] == last["failures"]
    metric = runtime.metrics.registry.get_sample_value("conduitd_dbt_runs_total",
                                                       {"pipeline": "orders", "outcome": "failed"})
    assert metric == 1
    assert runtime.metrics.registry.get_sample_value("conduitd_dbt_failing", {"pipeline": "orders"}) == 1


def test_fail_run_on_error_makes_the_run_exit_1(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                dbt_executable: str, dbt_env: dict[str, str]) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, dbt_executable, command="run --select tag:broken",
                   fail_run_on_error=True)
    done = conduitd("run", "-c", str(config), "--once", timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert [r["n"] for r in asyncio.run(fetch(pg_dsn, f"SELECT count(*) AS n FROM {pg_schema}.orders"))] == [6]
    [record] = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["pipelines"][0]["rows_written"] == 6 and record["pipelines"][0]["dbt"]["outcome"] == "failed"


async def test_daemon_runs_dbt_after_commits(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                             dbt_executable: str, dbt_env: dict[str, str]) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, dbt_executable, command="build --select tag:orders", every="1s")

    async def until(runtime: Runtime) -> None:
        await wait_for(lambda: runs(runtime) >= 1 and not running(runtime), "a first dbt run")
        write_orders(tmp_path / "in" / "b.jsonl", range(7, 10))  # more rows: a commit, then dbt again
        await wait_for(lambda: runs(runtime) >= 2 and not running(runtime), "a second dbt run")

    code, _, events = await run_in_process(config, once=False, until=until)
    assert code == 0
    assert [e["outcome"] for e in events][:2] == ["success", "success"]
    assert all(e["trigger"] == "every" for e in events)
    rows = await fetch(pg_dsn, f"SELECT sum(orders) AS n FROM {pg_schema}.orders_by_status")
    assert rows[0]["n"] == 9


def runs(runtime: Runtime) -> int:
    dbt = runtime.statuses()[0].dbt
    return int(dbt["runs"]) if dbt else 0


def running(runtime: Runtime) -> bool:
    dbt = runtime.statuses()[0].dbt
    return bool(dbt and dbt["running"])


async def wait_for(condition: Any, what: str, within: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"no {what} within {within}s"
        await asyncio.sleep(0.1)


def slow_dbt(tmp_path: Path) -> Path:
    """A stand-in `executable` that records its arguments and context file, reports its pid, and
    hangs: for what the runner does with a dbt that does not end (no dbt behaviour is imitated)."""
    script = tmp_path / "slow_dbt.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n'
                      f'cp "$CONDUITD_DBT_CONTEXT" {tmp_path}/context.json\n'
                      f'echo $$ > {tmp_path}/pid\nexec sleep 300\n')
    script.chmod(0o755)
    return script


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def test_a_stop_waits_drain_timeout_for_dbt_then_kills_it(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, str(slow_dbt(tmp_path)), command="build --select tag:orders",
                   every="1s", target="prod", kill_after="1s")
    text = config.read_text().replace("drain_timeout: 20s", "drain_timeout: 1s")
    config.write_text(text)

    async def until(runtime: Runtime) -> None:
        await wait_for(lambda: running(runtime) and (tmp_path / "pid").exists() and
                       (tmp_path / "pid").read_text().strip() != "", "a running dbt")

    code, runtime, events = await run_in_process(config, once=False, until=until)
    pid = int((tmp_path / "pid").read_text())
    assert code == 0  # the pipeline drained in time; the dbt run was stopped, the data is committed
    assert gone(pid)
    [event] = events
    assert event["outcome"] == "cancelled" and event["trigger"] == "every"
    assert runtime.statuses()[0].dbt["last"]["outcome"] == "cancelled"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:3] == ["build", "--select", "tag:orders"] and argv[argv.index("--target") + 1] == "prod"
    context = json.loads((tmp_path / "context.json").read_text())
    assert json.loads(argv[argv.index("--vars") + 1]) == {"conduitd": context}
    assert context["pipeline"] == "orders" and context["tables"] == [f"{pg_schema}.orders"]
    assert context["rows_written"] == 6 and context["batches"] >= 1 and context["trigger"] == "every"


async def test_a_dbt_past_its_timeout_is_stopped(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, str(slow_dbt(tmp_path)), timeout="1s", kill_after="1s")
    code, runtime, events = await run_in_process(config, once=True)
    assert code == 0
    assert gone(int((tmp_path / "pid").read_text()))
    assert [e["outcome"] for e in events] == ["timeout"]
    assert runtime.statuses()[0].dbt["last"]["trigger"] == "after_run"


def test_settings() -> None:
    from pydantic import ValidationError

    from conduitd.dbtsettings import AfterCommitConfig

    parsed = AfterCommitConfig.model_validate({"dbt": {"project_dir": "p", "every": "10m"}})
    assert parsed.dbt is not None and parsed.dbt.every == 600 and parsed.dbt.command == "build"
    assert AfterCommitConfig.model_validate({"dbt": {"project_dir": "p"}}).dbt.every == "after_run"  # type: ignore[union-attr]
    for wrong in ({"project_dir": "p", "every": "sometimes"}, {"project_dir": "p", "evry": "1m"}, {"command": "run"},
                  {"project_dir": "p", "every": "0s"}):
        with pytest.raises(ValidationError):
            AfterCommitConfig.model_validate({"dbt": wrong})


def test_dbt_does_not_outlive_a_killed_daemon(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    config = setup(tmp_path, pg_dsn, pg_schema, str(slow_dbt(tmp_path)), every="1s")
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        deadline = time.monotonic() + 60
        while not ((tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip()):
            assert time.monotonic() < deadline and daemon.poll() is None, tail(tmp_path / "daemon.log")
            time.sleep(0.1)
        pid = int((tmp_path / "pid").read_text())
        daemon.kill()
        daemon.wait(timeout=30)
        while not gone(pid):
            assert time.monotonic() < deadline + 30, "the dbt child outlived the daemon"
            time.sleep(0.1)
    finally:
        stop_daemon(daemon)
