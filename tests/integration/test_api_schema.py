"""Schema drift of `schema_evolution: manual` through the API: a new input column shows as
pending; apply runs its DDL with the decision and the audit row, the pipeline's next batches fill
the column and a DLQ replay moves the rows held meanwhile; reject only records the decision;
deciding twice is a conflict; only an admin decides."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.helpers.api import Daemon, rows, serving, until
from tests.integration.test_contract_mysql import mysql_database, mysql_server

__all__ = ["mysql_database", "mysql_server"]  # fixtures shared with the contract test


def config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "a").mkdir(exist_ok=True)
    return {"sources": [{"name": "src", "type": "file", "path": str(tmp_path / "a"), "format": "jsonl",
                         "poll_interval": 0.05}],
            "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
            "resources": [{"name": "p_a", "source": "src", "destination": "db", "project": "a",
                           "batch": {"max_wait": 0.05},
                           "schema_evolution": {"mode": "manual", "migrations_dir": str(tmp_path / "migrations")}}]}


def append(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def count(db: Path, sql: str) -> int:
    try:
        return int(rows(db, sql)[0][0])
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return -1


async def pending(daemon: Daemon) -> list[dict[str, Any]]:
    answer = await daemon.get("viewer-a", "/pipelines/p_a/schema/pending")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["pending"]
    return found


def columns(db: Path) -> list[str]:
    return [r[1] for r in rows(db, "PRAGMA table_info(p_a)")]


async def test_apply_adds_the_column_and_the_pipeline_fills_it(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    source = tmp_path / "a" / "1.jsonl"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(source, [{"id": i} for i in range(5)])
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 5, "the first rows")
        assert await pending(daemon) == []
        append(source, [{"id": i, "note": f"n{i}"} for i in range(5, 8)])
        await until(lambda: count(db, "SELECT count(*) FROM p_a_dlq") == 3, "the rows held for the new column")
        changes = await pending(daemon)
        assert changes and {(c["column"], c["change"]) for c in changes} == {("note", "add")}
        assert "note" not in columns(db)
        assert (await daemon.pipeline("viewer-a", "p_a"))["pending_schema_changes"] == len(changes)
        chosen = changes[0]["id"]

        for who in ("viewer-a", "operator-a"):
            refused = await daemon.post(who, f"/pipelines/p_a/schema/pending/{chosen}/apply")
            assert refused.status_code == 403, refused.text
        assert (await daemon.post("admin-a", "/pipelines/p_a/schema/pending/999999/apply")).status_code == 404
        applied = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{chosen}/apply",
                                    headers={"Idempotency-Key": "s1"})
        assert applied.status_code == 200, applied.text
        assert applied.json()["decision"] == "applied" and sorted(applied.json()["ids"]) == [c["id"] for c in changes]
        assert "note" in columns(db)
        assert await pending(daemon) == []
        assert (await daemon.pipeline("viewer-a", "p_a"))["pending_schema_changes"] == 0
        twice = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{chosen}/reject")
        assert twice.status_code == 409 and "applied already" in twice.json()["detail"]
        repeat = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{chosen}/apply",
                                   headers={"Idempotency-Key": "s1"})
        assert repeat.headers.get("Idempotent-Replay") == "true" and repeat.json() == applied.json()

        append(source, [{"id": i, "note": f"n{i}"} for i in range(8, 12)])  # now written whole
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 9, "the rows with the new column")
        moved = await daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"rule": "schema"})
        assert moved.status_code == 200 and moved.json()["moved"] == 3, moved.text

    assert rows(db, "SELECT id, note FROM p_a ORDER BY id") == [(i, f"n{i}" if i >= 5 else None) for i in range(12)]
    assert rows(db, "SELECT count(*) FROM p_a_dlq") == [(0,)]
    decided = rows(db, "SELECT history_id, decision, actor FROM conduitd_schema_decisions ORDER BY history_id")
    assert decided == [(c["id"], "applied", "admin-a") for c in changes]
    [(before, after)] = rows(db, "SELECT before_state, after_state FROM conduitd_audit WHERE action = 'schema_apply'")
    assert json.loads(before)["ddl"] == changes[0]["ddl"] and json.loads(after)["decision"] == "applied"


async def test_reject_records_the_decision_only(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    source = tmp_path / "a" / "1.jsonl"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(source, [{"id": 1}])
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 1, "the first row")
        append(source, [{"id": 2, "extra": 1.5}])
        await until(lambda: count(db, "SELECT count(*) FROM p_a_dlq") == 1, "the held row")
        [change] = await pending(daemon)
        rejected = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{change['id']}/reject")
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["ids"] == [change["id"]]
        assert await pending(daemon) == []
        again = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{change['id']}/apply")
        assert again.status_code == 409 and "rejected already" in again.json()["detail"]
    assert "extra" not in columns(db)
    assert rows(db, "SELECT count(*) FROM p_a_dlq WHERE rule = 'schema'") == [(1,)]
    assert rows(db, "SELECT decision FROM conduitd_schema_decisions") == [("rejected",)]
    assert rows(db, "SELECT count(*) FROM conduitd_audit WHERE action = 'schema_reject'") == [(1,)]


async def apply_and_replay(tmp_path: Path, destination: dict[str, Any],
                           query: Callable[[str], Awaitable[list[tuple[Any, ...]]]]) -> None:
    """Manual mode into `destination`: a new column is pending, apply adds it (on MySQL outside
    the decision's transaction), the held rows page through the DLQ and a replay moves them."""
    config_ = config(tmp_path)
    config_["destinations"] = [{"name": "db", **destination}]
    source = tmp_path / "a" / "1.jsonl"

    async def count(sql: str) -> int:
        try:
            return int((await query(sql))[0][0])
        except Exception:  # noqa: BLE001 - the table does not exist yet
            return -1

    async with serving(tmp_path, config_) as daemon:
        append(source, [{"id": i} for i in range(5)])
        await until(lambda: _is(count("SELECT count(*) FROM p_a"), 5), "the first rows")
        append(source, [{"id": i, "note": f"n{i}"} for i in range(5, 8)])
        await until(lambda: _is(count("SELECT count(*) FROM p_a_dlq"), 3), "the held rows")
        changes = await pending(daemon)
        applied = await daemon.post("admin-a", f"/pipelines/p_a/schema/pending/{changes[0]['id']}/apply")
        assert applied.status_code == 200, applied.text
        assert await pending(daemon) == []
        assert await query("SELECT count(note) FROM p_a") == [(0,)]  # the column is there now
        first = (await daemon.get("viewer-a", "/pipelines/p_a/dlq", params={"limit": 2})).json()
        second = (await daemon.get("viewer-a", "/pipelines/p_a/dlq",
                                   params={"limit": 2, "after_id": first["next"]})).json()
        assert len(first["entries"]) == 2 and len(second["entries"]) == 1 and second["next"] is None
        moved = await daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"rule": "schema"})
        assert moved.status_code == 200 and moved.json()["moved"] == 3, moved.text
    assert [tuple(r) for r in await query("SELECT id, note FROM p_a ORDER BY id")] == [
        (i, f"n{i}" if i >= 5 else None) for i in range(8)]
    assert await query("SELECT count(*) FROM p_a_dlq") == [(0,)]
    assert sorted(r[0] for r in await query("SELECT action FROM conduitd_audit")) == ["dlq_replay", "schema_apply"]


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_apply_on_postgres(tmp_path: Path, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    async def query(sql: str) -> list[tuple[Any, ...]]:
        await pg.execute(f'SET search_path TO "{pg_schema}"')
        return [tuple(r) for r in await pg.fetch(sql)]

    await apply_and_replay(tmp_path, {"type": "postgres", "dsn": pg_dsn, "schema": pg_schema}, query)


async def test_apply_on_mysql(tmp_path: Path, mysql_database: str) -> None:
    from tests.integration.test_contract_mysql import HOST, PORT, sql

    async def query(statement: str) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in await sql(statement, database=mysql_database)]

    await apply_and_replay(tmp_path, {"type": "mysql", "host": HOST, "port": int(PORT or 3306), "user": "root",
                                      "database": mysql_database}, query)
