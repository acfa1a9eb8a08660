"""The control plane operates a running daemon: pause stops commits and resume reads on with
nothing lost or repeated, roles and projects fence every call, mutations are audited once per
Idempotency-Key, usage is counted by the committing transaction, a failed pipeline stays failed
while the others run and restarts on request, and a bounded run is started and polled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.helpers.api import Daemon, rows, serving, until


def config(tmp_path: Path, **resource: Any) -> dict[str, Any]:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir(exist_ok=True)
    db = str(tmp_path / "t.db")
    resources = [
        {"name": "p_a", "source": "src_a", "destination": "db", "project": "a", "batch": {"max_wait": 0.05},
         **resource},
        {"name": "p_c", "source": "src_a", "destination": "db", "project": "a", "table": "p_c",
         "batch": {"max_wait": 0.05}},
        {"name": "p_b", "source": "src_b", "destination": "db", "project": "b", "batch": {"max_wait": 0.05}},
    ]
    return {"sources": [{"name": "src_a", "type": "file", "path": str(tmp_path / "a"), "format": "jsonl",
                         "poll_interval": 0.05},
                        {"name": "src_b", "type": "file", "path": str(tmp_path / "b"), "format": "jsonl",
                         "poll_interval": 0.05}],
            "destinations": [{"name": "db", "type": "sqlite", "path": db}],
            "resources": resources}


def append(path: Path, first: int, count: int, **extra: Any) -> None:
    with path.open("a") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"id": i, "name": f"n{i}", **extra}) + "\n")


async def written(daemon: Daemon, name: str) -> int:
    return int((await daemon.pipeline("admin-all", name)).get("rows_written", 0))


async def test_pause_stops_commits_and_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 100)
        await until(lambda: _all_written(daemon, {"p_a": 100, "p_c": 100}), "the first rows")
        listed = {p["name"]: p for p in (await daemon.get("viewer-a", "/pipelines?series=true")).json()["pipelines"]}
        assert len(listed["p_a"]["throughput"]) == 90  # 10-second buckets over 15 minutes
        assert round(sum(b["rows_per_second"] for b in listed["p_a"]["throughput"]) * 10) == 100
        assert "throughput" not in (await daemon.get("viewer-a", "/pipelines")).json()["pipelines"][0]
        one = await daemon.pipeline("viewer-a", "p_a")
        assert one["lag_series"] and one["lag_series"][-1]["lag"] == {"bytes": 0}

        paused = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "k1"})
        assert paused.status_code == 200, paused.text
        assert paused.json()["state"] == "paused"
        assert paused.json()["audit"] == "recorded"
        again = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.headers.get("Idempotent-Replay") == "true"

        # p_c reads the same files: once it has committed the new rows, p_a had them to read too.
        append(tmp_path / "a" / "1.jsonl", 100, 50)
        await until(lambda: _all_written(daemon, {"p_c": 150}), "p_c to commit the new rows")
        assert await written(daemon, "p_a") == 100
        assert rows(db, "SELECT count(*) FROM p_a") == [(100,)]
        assert (await daemon.pipeline("viewer-a", "p_a"))["state"] == "paused"

        resumed = await daemon.post("operator-a", "/pipelines/p_a/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["state"] == "running"
        await until(lambda: _all_written(daemon, {"p_a": 150}), "p_a to read on")

    assert rows(db, "SELECT id, count(*) FROM p_a GROUP BY id HAVING count(*) > 1") == []
    assert rows(db, "SELECT count(*), min(id), max(id) FROM p_a") == [(150, 0, 149)]
    audit = rows(db, "SELECT actor, role, project, pipeline, action, idempotency_key, before_state, after_state "
                     "FROM conduitd_audit ORDER BY id")
    assert [(a[0], a[4], a[5]) for a in audit] == [("operator-a", "pause", "k1"), ("operator-a", "resume", None)]
    assert json.loads(audit[0][6])["state"] == "running" and json.loads(audit[0][7])["state"] == "paused"
    usage = rows(db, "SELECT pipeline, project, sum(rows), sum(batches) FROM conduitd_usage GROUP BY pipeline, "
                     "project ORDER BY pipeline")
    assert [(u[0], u[1], u[2]) for u in usage] == [("p_a", "a", 150), ("p_c", "a", 150)]
    assert all(u[3] >= 1 for u in usage)


async def _all_written(daemon: Daemon, expected: dict[str, int]) -> bool:
    for name, count in expected.items():
        if await written(daemon, name) != count:
            return False
    return True


async def test_roles_and_projects_fence_every_call(tmp_path: Path) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        async with daemon.client(None) as anonymous:
            answer = await anonymous.get("/api/v1/pipelines")
            assert answer.status_code == 401
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["status"] == 401
        async with daemon.client(None) as forged:
            answer = await forged.get("/api/v1/pipelines", headers={"Authorization": "Bearer cdt_not-a-token"})
            assert answer.status_code == 401

        names = [p["name"] for p in (await daemon.get("viewer-a", "/pipelines")).json()["pipelines"]]
        assert names == ["p_a", "p_c"]
        names = [p["name"] for p in (await daemon.get("viewer-b", "/pipelines")).json()["pipelines"]]
        assert names == ["p_b"]
        for path in ("/pipelines/p_b", "/pipelines/p_b/timeline", "/pipelines/p_b/config",
                     "/pipelines/p_b/partitions", "/pipelines/p_b/dlq", "/pipelines/p_b/checkpoints"):
            answer = await daemon.get("viewer-a", path)
            assert answer.status_code == 404, (path, answer.text)
            assert "p_b" in answer.json()["detail"]
        assert (await daemon.post("operator-a", "/pipelines/p_b/pause")).status_code == 404
        for action in ("pause", "resume", "restart", "runs"):
            answer = await daemon.post("viewer-a", f"/pipelines/p_a/{action}")
            assert answer.status_code == 403, (action, answer.text)
            assert "operator" in answer.json()["detail"]
        assert (await daemon.get("viewer-a", "/whoami")).json() == {"name": "viewer-a", "role": "viewer",
                                                                    "projects": ["a"]}


async def test_a_failed_pipeline_waits_for_a_restart_while_the_others_run(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    strict = {"schema_evolution": {"mode": "strict"}}
    async with serving(tmp_path, config(tmp_path, **strict)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 10)
        await until(lambda: _all_written(daemon, {"p_a": 10}), "the first rows")
        append(tmp_path / "a" / "1.jsonl", 10, 5, extra="new column")  # strict: a new column stops p_a
        await until(lambda: _state(daemon, "p_a", "failed"), "p_a to fail")
        body = await daemon.pipeline("viewer-a", "p_a")
        assert "extra" in body["last_error"]

        append(tmp_path / "b" / "1.jsonl", 0, 7)  # the others run on
        await until(lambda: _all_written(daemon, {"p_b": 7, "p_c": 15}), "p_b and p_c to commit")

        refused = await daemon.post("operator-a", "/pipelines/p_a/resume")
        assert refused.status_code == 409
        rows(db, "ALTER TABLE p_a ADD COLUMN extra TEXT")  # the operator fixes the table
        restarted = await daemon.post("operator-a", "/pipelines/p_a/restart")
        assert restarted.status_code == 200, restarted.text
        await until(lambda: _all_written(daemon, {"p_a": 5}), "p_a to commit after its restart")
    assert rows(db, "SELECT count(*), count(DISTINCT id), count(extra) FROM p_a") == [(15, 15, 5)]


async def _state(daemon: Daemon, name: str, state: str) -> bool:
    return (await daemon.pipeline("admin-all", name))["state"] == state


async def test_a_bounded_run_of_a_pipeline_the_daemon_does_not_run(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    append(tmp_path / "b" / "1.jsonl", 0, 0) if (tmp_path / "b").exists() else None
    async with serving(tmp_path, config(tmp_path), only=("p_a",)) as daemon:
        append(tmp_path / "b" / "1.jsonl", 0, 30)
        listed = {p["name"]: p for p in (await daemon.get("viewer-b", "/pipelines")).json()["pipelines"]}
        assert listed["p_b"]["state"] == "idle"
        assert (await daemon.post("operator-a", "/pipelines/p_b/runs")).status_code == 404
        started = await daemon.post("operator-b", "/pipelines/p_b/runs", headers={"Idempotency-Key": "r1"})
        assert started.status_code == 202, started.text
        run = started.json()["id"]
        repeat = await daemon.post("operator-b", "/pipelines/p_b/runs", headers={"Idempotency-Key": "r1"})
        assert repeat.json()["id"] == run  # the same run, not a second one

        async def finished() -> bool:
            return (await daemon.get("viewer-b", f"/runs/{run}")).json()["state"] != "running"

        await until(finished, "the run to end")
        result = (await daemon.get("viewer-b", f"/runs/{run}")).json()
        assert result["state"] == "succeeded" and result["exit_code"] == 0, result
        assert result["rows_written"] == 30
        assert result["positions_before"] == {} and len(result["positions_after"]) == 1
        [position] = result["positions_after"].values()
        assert position["offset"] == (tmp_path / "b" / "1.jsonl").stat().st_size
        assert (await daemon.get("viewer-a", f"/runs/{run}")).status_code == 404
        assert [r["id"] for r in (await daemon.get("viewer-b", "/pipelines/p_b/runs")).json()["runs"]] == [run]
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM p_b") == [(30, 30)]


async def test_the_event_stream_tells_commits_and_state_changes_of_visible_pipelines_only(tmp_path: Path) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon, daemon.client("viewer-a") as client:
        assert (await client.get("/api/v1/events", params={"pipeline": "p_b"})).status_code == 404
        async with client.stream("GET", "/api/v1/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await anext(lines) == ": conduitd events"
            append(tmp_path / "b" / "1.jsonl", 0, 3)  # project b: not for this viewer
            await until(lambda: _all_written(daemon, {"p_b": 3}), "p_b to commit")
            append(tmp_path / "a" / "1.jsonl", 0, 4)
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                async for line in lines:
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
                        if any(e["kind"] == "batch" and e["pipeline"] == "p_a" for e in seen):
                            break
            committed = next(e for e in seen if e["kind"] == "batch" and e["pipeline"] == "p_a")
            assert committed["outcome"] == "committed" and committed["rows_written"] == 4
            assert "write" in committed["stages"] and "commit" in committed["stages"]
            assert all(e["pipeline"] != "p_b" for e in seen)

            assert (await daemon.post("operator-a", "/pipelines/p_a/pause")).status_code == 200
            async with asyncio.timeout(60):
                async for line in lines:
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if event["kind"] == "state" and event["pipeline"] == "p_a" and event["state"] == "paused":
                            break


async def test_the_effective_config_reads_as_written_without_its_secrets(tmp_path: Path) -> None:
    settings = config(tmp_path, batch={"max_rows": "auto", "initial_rows": 500})
    settings["sources"][0]["csv_delimiter"] = ";"
    settings["destinations"].append({"name": "pg", "type": "postgres",
                                     "dsn": "postgresql://u:hunter2-not-shown@127.0.0.1:1/x"})
    settings["resources"].append({"name": "p_pg", "source": "src_b", "destination": "pg", "project": "b"})
    async with serving(tmp_path, settings, only=("p_a",)) as daemon:
        body = (await daemon.get("viewer-a", "/pipelines/p_a/config")).json()
        assert body["resource"]["batch"]["max_rows"] == "auto"
        assert body["resource"]["batch"]["initial_rows"] == 500
        assert body["source"]["csv_delimiter"] == ";" and body["destination"]["type"] == "sqlite"
        answer = await daemon.get("admin-all", "/pipelines/p_pg/config")
        assert answer.status_code == 200
        assert "hunter2" not in answer.text and body["destination"]["path"].endswith("t.db")


async def test_a_mutation_repeated_after_a_restart_is_found_in_the_audit_log_and_not_made_again(
        tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        paused = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "kp"})
        assert paused.status_code == 200 and paused.json()["state"] == "paused"
    async with serving(tmp_path, config(tmp_path)) as daemon:  # a new daemon: it remembers no answers
        await until(lambda: _state(daemon, "p_a", "running"), "p_a to run")
        again = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "kp"})
        assert again.status_code == 200 and again.headers.get("Idempotent-Replay") == "true"
        assert again.json()["replayed"] is True and again.json()["action"] == "pause"
        assert again.json()["after"]["state"] == "paused"
        assert (await daemon.pipeline("viewer-a", "p_a"))["state"] == "running"  # not paused a second time
        other = await daemon.post("operator-b", "/pipelines/p_b/pause", headers={"Idempotency-Key": "kp"})
        assert other.status_code == 200 and "Idempotent-Replay" not in other.headers  # another caller's key
    assert rows(db, "SELECT count(*) FROM conduitd_audit WHERE idempotency_key = 'kp'") == [(2,)]
