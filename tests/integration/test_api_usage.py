"""Usage analytics through the API: what each batch's own transaction counted, per pipeline and
hour and per project, equal to the rows in the tables (a rolled-back batch is never counted),
filtered by since/until, with totals, and as CSV that parses back to the same numbers; a
pipeline whose destination keeps no usage is named with the daemon's counters, never estimated."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers.api import Daemon, rows, serving, until


def config(tmp_path: Path) -> dict[str, Any]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    fast = {"max_wait": 0.05}
    return {
        "sources": [{"name": f"src_{n}", "type": "file", "path": str(tmp_path / n), "format": "jsonl",
                     "poll_interval": 0.05} for n in ("a", "b")],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")},
                         {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}],
        "resources": [
            {"name": "p_a", "source": "src_a", "destination": "db", "project": "a", "batch": fast},
            {"name": "p_c", "source": "src_a", "destination": "db", "project": "a", "batch": fast},
            {"name": "p_b", "source": "src_b", "destination": "db", "project": "b", "batch": fast},
            {"name": "p_f", "source": "src_b", "destination": "out", "project": "b", "batch": fast},
        ]}


def append(path: Path, first: int, count: int) -> None:
    with path.open("a") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"id": i, "name": f"n{i}"}) + "\n")


def count(db: Path, table: str) -> int:
    return int(rows(db, f"SELECT count(*) FROM {table}")[0][0])


async def usage(daemon: Daemon, who: str = "admin-all", **params: str) -> dict[str, Any]:
    answer = await daemon.get(who, "/usage", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


def by_pipeline(body: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in body["usage"]:
        found[line["pipeline"]] = found.get(line["pipeline"], 0) + line["rows"]
    return found


HOUR = timedelta(hours=1)
PAST = datetime(2026, 1, 5, 10, tzinfo=UTC)
SEEDED = [  # (pipeline, project, hour, rows, bytes, dlq_rows, batches): earlier hours, as commits then left them
    ("p_a", "a", PAST, 40, 4000, 1, 2), ("p_a", "a", PAST + HOUR, 7, 700, 0, 1),
    ("p_c", "a", PAST + HOUR, 5, 500, 2, 3), ("p_b", "b", PAST, 11, 1100, 0, 1)]


async def test_usage_is_what_the_transactions_committed_per_pipeline_project_and_hour(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 120)
        append(tmp_path / "b" / "1.jsonl", 0, 30)

        async def committed() -> bool:
            return by_pipeline(await usage(daemon)) == {"p_a": 120, "p_c": 120, "p_b": 30}

        await until(committed, "usage of every committed row")
        assert [count(db, t) for t in ("p_a", "p_c", "p_b")] == [120, 120, 30]
        now = await usage(daemon)
        batches = {p: (await daemon.pipeline("admin-all", p))["batches"] for p in ("p_a", "p_c", "p_b")}
        assert {u["pipeline"]: u["batches"] for u in now["totals"]["groups"]} == batches
        assert all(u["bytes"] > 0 for u in now["usage"])

        # Earlier hours, as the commits of then left them: each (pipeline, hour) is a line of its own.
        seed(db)
        body = await usage(daemon, until=(PAST + 2 * HOUR).isoformat())
        assert [(u["pipeline"], u["hour"], u["rows"], u["bytes"], u["dlq_rows"], u["batches"]) for u in body["usage"]] \
            == [("p_a", PAST.isoformat(), 40, 4000, 1, 2), ("p_b", PAST.isoformat(), 11, 1100, 0, 1),
                ("p_a", (PAST + HOUR).isoformat(), 7, 700, 0, 1), ("p_c", (PAST + HOUR).isoformat(), 5, 500, 2, 3)]
        assert body["totals"]["all"] == {"rows": 63, "bytes": 6300, "dlq_rows": 3, "batches": 7}

        # since/until select the hours that overlap [since, until): 10:30..11:00 is the 10:00 hour only.
        one = await usage(daemon, since=(PAST + HOUR / 2).isoformat(), until=(PAST + HOUR).isoformat())
        assert [(u["pipeline"], u["rows"]) for u in one["usage"]] == [("p_a", 40), ("p_b", 11)]
        assert (await daemon.get("admin-all", "/usage", params={"since": (PAST + HOUR).isoformat(),
                                                                "until": PAST.isoformat()})).status_code == 422

        projects = await usage(daemon, group="project", until=(PAST + 2 * HOUR).isoformat())
        assert [(u["project"], u["hour"], u["rows"], u["batches"]) for u in projects["usage"]] == [
            ("a", PAST.isoformat(), 40, 2), ("b", PAST.isoformat(), 11, 1), ("a", (PAST + HOUR).isoformat(), 12, 4)]
        assert all("pipeline" not in u for u in projects["usage"])
        everything = await usage(daemon, group="project")
        assert {g["project"]: g["rows"] for g in everything["totals"]["groups"]} == {
            "a": 120 + 120 + 40 + 7 + 5, "b": 30 + 11}

        # A viewer sees their projects only; a pipeline outside them is not found.
        seen = await usage(daemon, "viewer-b")
        assert {u["pipeline"] for u in seen["usage"]} == {"p_b"} and seen["totals"]["all"]["rows"] == 41
        assert (await daemon.get("viewer-b", "/usage", params={"pipeline": "p_a"})).status_code == 404
        assert by_pipeline(await usage(daemon, "viewer-a", pipeline="p_c")) == {"p_c": 125}

        # The file destination keeps no usage: said so, with the daemon's own counters, no estimate.
        await until(lambda: _written(daemon, "p_f", 30), "p_f to write")
        not_kept = {n["pipeline"]: n for n in everything["not_kept"]}
        assert set(not_kept) == {"p_f"} and "keeps no usage" in not_kept["p_f"]["reason"]
        counters = (await usage(daemon))["not_kept"][0]["daemon_counters"]
        assert counters["rows"] == 30 and counters["bytes"] is None and counters["batches"] >= 1
        assert "p_f" not in by_pipeline(await usage(daemon))

        # CSV: asked for by parameter or by Accept; a header row; parses back to the JSON's numbers.
        for group in ("pipeline", "project"):
            as_json = await usage(daemon, group=group)
            by_format = await daemon.get("admin-all", "/usage", params={"group": group, "format": "csv"})
            by_accept = await daemon.get("admin-all", "/usage", params={"group": group},
                                         headers={"Accept": "text/csv"})
            assert by_format.status_code == by_accept.status_code == 200, by_format.text
            assert by_format.headers["content-type"].startswith("text/csv")
            assert by_format.text == by_accept.text
            assert by_format.headers["Conduitd-Usage-Incomplete"] == "p_f"
            assert all(line.endswith("\r\n") for line in by_format.text.splitlines(keepends=True))
            parsed = list(csv.DictReader(io.StringIO(by_format.text, newline="")))
            keys = ["hour", "pipeline", "project"] if group == "pipeline" else ["hour", "project"]
            assert list(parsed[0]) == [*keys, "rows", "bytes", "dlq_rows", "batches"]
            assert [{k: (v if k in keys else int(v)) for k, v in line.items()} for line in parsed] == as_json["usage"]
        preferring_json = await daemon.get("admin-all", "/usage",
                                           headers={"Accept": "text/csv;q=0.5, application/json"})
        assert preferring_json.headers["content-type"].startswith("application/json")


async def _written(daemon: Daemon, name: str, expected: int) -> bool:
    return int((await daemon.pipeline("admin-all", name))["rows_written"]) == expected


def seed(db: Path) -> None:
    """Write SEEDED as SQLite's driver writes hours (UTC, `%Y-%m-%d %H:%M:%S`)."""
    connection = sqlite3.connect(db, timeout=30)
    try:
        with connection:
            connection.executemany(
                "INSERT INTO conduitd_usage (pipeline, project, hour, rows, bytes, dlq_rows, batches) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*s[:2], s[2].strftime("%Y-%m-%d %H:%M:%S"), *s[3:]) for s in SEEDED])
    finally:
        connection.close()


async def test_a_batch_whose_commit_fails_is_never_counted(tmp_path: Path) -> None:
    """A trigger refuses p_a's usage update (the last step before COMMIT) for any batch holding an
    id >= 1000: its rows, its checkpoint and its usage roll back together, the pipeline fails,
    and after the operator removes the trigger and restarts it the batch counts exactly once."""
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 100)

        async def counted(expected: dict[str, int]) -> bool:
            return {p: n for p, n in by_pipeline(await usage(daemon)).items() if p in expected} == expected

        await until(lambda: counted({"p_a": 100, "p_c": 100}), "the first rows to be counted")
        rows(db, "CREATE TRIGGER poison AFTER UPDATE ON conduitd_usage "
                 "WHEN NEW.pipeline = 'p_a' AND EXISTS (SELECT 1 FROM p_a WHERE id >= 1000) "
                 "BEGIN SELECT RAISE(ABORT, 'poisoned batch'); END")
        append(tmp_path / "a" / "1.jsonl", 1000, 10)
        await until(lambda: _state(daemon, "p_a", "failed"), "p_a to fail on its usage step")
        await until(lambda: counted({"p_c": 110}), "p_c to count the same rows")
        assert "poisoned batch" in (await daemon.pipeline("admin-all", "p_a"))["last_error"]
        assert (await usage(daemon, pipeline="p_a"))["totals"]["all"]["rows"] == count(db, "p_a") == 100
        assert rows(db, "SELECT count(*) FROM p_a WHERE id >= 1000") == [(0,)]

        rows(db, "DROP TRIGGER poison")
        restarted = await daemon.post("operator-a", "/pipelines/p_a/restart")
        assert restarted.status_code == 200, restarted.text
        await until(lambda: counted({"p_a": 110}), "p_a to count the batch after its restart")
        body = await usage(daemon, pipeline="p_a")
        assert body["totals"]["all"]["rows"] == count(db, "p_a") == 110
        assert body["totals"]["all"]["batches"] == int(rows(db, "SELECT sum(batches) FROM conduitd_usage "
                                                                "WHERE pipeline = 'p_a'")[0][0])
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM p_a") == [(110, 110)]


async def _state(daemon: Daemon, name: str, state: str) -> bool:
    return str((await daemon.pipeline("admin-all", name))["state"]) == state
