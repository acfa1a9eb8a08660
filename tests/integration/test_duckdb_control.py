"""The control plane on a DuckDB destination (`Capabilities.control`), through the API of a running
daemon, as on the other SQL destinations: usage counted by each batch's transaction, the audit log
with its Idempotency-Keys, and `manual` schema changes applied with their DLQ rows replayed. The
API reads the file while the pipeline writes it, in the same process (DuckDB locks the file for
one process, so this is the only way the control plane can reach it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import Daemon, serving, until
from tests.integration.test_api_schema import apply_and_replay

duckdb = pytest.importorskip("duckdb")  # the duckdb extra


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(path))  # in this process: shares the daemon's open database
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


async def test_apply_on_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"

    async def run(sql: str) -> list[tuple[Any, ...]]:
        return query(path, sql)

    await apply_and_replay(tmp_path, {"type": "duckdb", "path": str(path)}, run)
    assert query(path, "SELECT decision, actor FROM conduitd_schema_decisions") == [("applied", "admin-a")]


def config(tmp_path: Path) -> dict[str, Any]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    fast = {"max_wait": 0.05}
    return {"sources": [{"name": f"src_{n}", "type": "file", "path": str(tmp_path / n), "format": "jsonl",
                         "poll_interval": 0.05} for n in ("a", "b")],
            "destinations": [{"name": "db", "type": "duckdb", "path": str(tmp_path / "t.duckdb")}],
            "resources": [{"name": "p_a", "source": "src_a", "destination": "db", "project": "a", "batch": fast},
                          {"name": "p_b", "source": "src_b", "destination": "db", "project": "b", "batch": fast}]}


def append(path: Path, first: int, count: int) -> None:
    with path.open("a") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"id": i, "name": f"n{i}"}) + "\n")


async def usage(daemon: Daemon, who: str = "admin-all", **params: str) -> dict[str, Any]:
    answer = await daemon.get(who, "/usage", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_usage_and_the_audit_log_are_kept_in_the_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 120)
        append(tmp_path / "b" / "1.jsonl", 0, 30)

        async def counted() -> bool:
            body = await usage(daemon)
            return {g["pipeline"]: g["rows"] for g in body["totals"]["groups"]} == {"p_a": 120, "p_b": 30}

        await until(counted, "usage of every committed row")
        body = await usage(daemon)
        assert body["not_kept"] == [] and all(u["bytes"] > 0 for u in body["usage"])
        batches = {p: (await daemon.pipeline("admin-all", p))["batches"] for p in ("p_a", "p_b")}
        assert {g["pipeline"]: g["batches"] for g in body["totals"]["groups"]} == batches
        seen = await usage(daemon, "viewer-b")
        assert {u["pipeline"] for u in seen["usage"]} == {"p_b"} and seen["totals"]["all"]["rows"] == 30

        # A mutation is audited once per Idempotency-Key: repeated, it is found and not made again.
        paused = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "k1"})
        assert paused.status_code == 200 and paused.json()["state"] == "paused", paused.text
        again = await daemon.post("operator-a", "/pipelines/p_a/pause", headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.headers.get("Idempotent-Replay") == "true", again.text
        resumed = await daemon.post("operator-a", "/pipelines/p_a/resume")
        assert resumed.status_code == 200, resumed.text
        log = await daemon.get("admin-all", "/audit")
        assert log.status_code == 200, log.text
        entries = log.json()["entries"]
        assert [(e["action"], e["actor"], e["pipeline"], e["idempotency_key"]) for e in entries] == [
            ("resume", "operator-a", "p_a", None), ("pause", "operator-a", "p_a", "k1")]
        assert all(e["at"] and e["destination"] == "db" for e in entries)
        assert (await daemon.get("viewer-b", "/audit")).json()["entries"] == []  # project a's log only
        append(tmp_path / "a" / "1.jsonl", 120, 10)

        async def resumed_and_counted() -> bool:
            return int((await usage(daemon, pipeline="p_a"))["totals"]["all"]["rows"]) == 130

        await until(resumed_and_counted, "p_a to resume and count its new rows")
    assert query(path, 'SELECT sum("rows") FROM conduitd_usage WHERE pipeline = \'p_a\'') == [(130,)]
    assert query(path, "SELECT count(*), count(DISTINCT id) FROM p_a") == [(130, 130)]
    assert query(path, "SELECT action FROM conduitd_audit ORDER BY id") == [("pause",), ("resume",)]


async def test_a_reader_shares_the_writers_database_and_a_writer_waits_for_a_reader(tmp_path: Path) -> None:
    """In one process: a read-only open of a file a pipeline writes shares its database (DuckDB
    refuses a connection configured otherwise); a writer that finds the file open read-only is
    refused as unreachable (retried), and opens once the reader closed."""
    from conduitd.destinations.duckdb.destination import DuckdbDestination
    from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig
    from conduitd.errors import DependencyUnreachable

    def make() -> DuckdbDestination:
        return DuckdbDestination(DuckdbDestinationConfig(name="d", type="duckdb", path=str(tmp_path / "t.duckdb")))

    writer, reader = make(), make()
    await writer.open()
    try:
        await reader.open(read_only=True)
        try:
            assert await reader.read_usage(["p"]) == [] and await reader.read_audit(None, 10) == []
        finally:
            await reader.close()
    finally:
        await writer.close()
    await reader.open(read_only=True)  # no writer in this process now: a read-only connection
    try:
        with pytest.raises(DependencyUnreachable, match="this process is reading it"):
            await writer.open()
    finally:
        await reader.close()
    await writer.open()
    await writer.close()
