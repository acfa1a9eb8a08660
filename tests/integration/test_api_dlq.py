"""The DLQ through the API: filters and pages, one entry, replay exactly once beside the running
pipeline (rows that pass move to the table with their removal from the DLQ and the audit row;
rows still rejected stay with today's reason), discard with the entries kept in the audit log;
roles and projects fence each call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.helpers.api import Daemon, rows, serving, until


def config(tmp_path: Path) -> dict[str, Any]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    manual = {"mode": "manual", "migrations_dir": str(tmp_path / "migrations")}
    checks = [{"name": "email_ok", "column": "email", "check": "regex", "pattern": "[^@]+@[^@]+", "action": "dlq"}]
    return {"sources": [{"name": "src_a", "type": "file", "path": str(tmp_path / "a"), "format": "jsonl",
                         "poll_interval": 0.05},
                        {"name": "src_b", "type": "file", "path": str(tmp_path / "b"), "format": "jsonl",
                         "poll_interval": 0.05}],
            "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
            "resources": [
                {"name": "p_a", "source": "src_a", "destination": "db", "project": "a", "mode": "upsert",
                 "unique_key": ["id"], "batch": {"max_wait": 0.05}, "schema_evolution": manual,
                 "quality_checks": checks},
                {"name": "p_b", "source": "src_b", "destination": "db", "project": "b",
                 "batch": {"max_wait": 0.05}}]}


def append(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def good(first: int, count: int) -> list[dict[str, Any]]:
    return [{"id": i, "email": f"u{i}@x.org"} for i in range(first, first + count)]


async def populate(tmp_path: Path, daemon: Daemon) -> None:
    """10 rows in the table; 12 held for a column the table lacks (rule schema), 5 with a bad email."""
    append(tmp_path / "a" / "1.jsonl", good(0, 10))
    await until(lambda: _count(tmp_path, "SELECT count(*) FROM p_a") == 10, "the first rows")
    append(tmp_path / "a" / "1.jsonl", [{"id": i, "email": f"u{i}@x.org", "note": f"n{i}"} for i in range(10, 22)]
           + [{"id": i, "email": "nobody"} for i in range(22, 27)])
    await until(lambda: _count(tmp_path, "SELECT count(*) FROM p_a_dlq") == 17, "the DLQ rows")


def _count(tmp_path: Path, sql: str) -> int:
    try:
        return int(rows(tmp_path / "t.db", sql)[0][0])
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return -1


async def test_list_filters_pages_and_one_entry(tmp_path: Path) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        await populate(tmp_path, daemon)
        stored = [r[0] for r in rows(tmp_path / "t.db", "SELECT id FROM p_a_dlq ORDER BY id")]

        seen: list[int] = []
        after: int | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 5} | ({"after_id": after} if after is not None else {})
            answer = await daemon.get("viewer-a", "/pipelines/p_a/dlq", params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            seen += [e["id"] for e in body["entries"]]
            pages += 1
            if body["next"] is None:
                break
            assert body["next"] == body["entries"][-1]["id"]
            after = body["next"]
        assert seen == stored and pages == 4  # 5 + 5 + 5 + 2, each entry once, in id order

        by_rule = (await daemon.get("viewer-a", "/pipelines/p_a/dlq", params={"rule": "schema"})).json()
        assert sorted(json.loads(e["payload"])["id"] for e in by_rule["entries"]) == list(range(10, 22))
        assert all("note" in e["reason"] for e in by_rule["entries"]) and by_rule["next"] is None
        bad = (await daemon.get("viewer-a", "/pipelines/p_a/dlq", params={"rule": "email_ok", "limit": 3})).json()
        assert len(bad["entries"]) == 3 and bad["next"] is not None
        for since, until_, expected in (("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", 17),
                                        ("2999-01-01T00:00:00Z", None, 0), (None, "2000-01-01T00:00:00", 0)):
            params = {k: v for k, v in (("since", since), ("until", until_)) if v is not None}
            answer = await daemon.get("viewer-a", "/pipelines/p_a/dlq", params=params)
            assert len(answer.json()["entries"]) == expected, (params, answer.text)

        [(held, payload)] = rows(tmp_path / "t.db", "SELECT id, payload FROM p_a_dlq WHERE rule = 'schema' "
                                                    "ORDER BY id LIMIT 1")
        one = await daemon.get("viewer-a", f"/pipelines/p_a/dlq/{held}")
        assert one.status_code == 200 and one.json()["id"] == held
        assert one.json()["payload"] == payload and one.json()["rule"] == "schema" and one.json()["column"] == "note"
        absent = await daemon.get("viewer-a", f"/pipelines/p_a/dlq/{max(stored) + 1000}")
        assert absent.status_code == 404 and absent.headers["content-type"] == "application/problem+json"
        assert (await daemon.get("viewer-b", f"/pipelines/p_a/dlq/{stored[0]}")).status_code == 404
        assert (await daemon.get("viewer-a", "/pipelines/p_a/dlq", params={"limit": 0})).status_code == 422


async def test_replay_moves_rows_exactly_once_beside_the_running_pipeline(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        await populate(tmp_path, daemon)
        held = [r[0] for r in rows(db, "SELECT id FROM p_a_dlq WHERE rule = 'schema' ORDER BY id")]
        bad = [r[0] for r in rows(db, "SELECT id FROM p_a_dlq WHERE rule = 'email_ok' ORDER BY id")]
        assert (await daemon.post("viewer-a", "/pipelines/p_a/dlq/replay", json={"ids": held})).status_code == 403
        assert (await daemon.post("operator-b", "/pipelines/p_a/dlq/replay", json={"ids": held})).status_code == 404
        rows(db, "ALTER TABLE p_a ADD COLUMN note TEXT")  # the operator applies the migration

        # The pipeline commits new rows while two operators replay the same entries at once.
        append(tmp_path / "a" / "1.jsonl", good(100, 200))
        first, second = await asyncio.gather(
            daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"ids": held},
                        headers={"Idempotency-Key": "r1"}),
            daemon.post("admin-a", "/pipelines/p_a/dlq/replay", json={"ids": held}))
        answers = sorted([first, second], key=lambda a: a.status_code)
        assert answers[0].status_code == 200, answers[0].text
        assert answers[1].status_code in (404, 409), answers[1].text  # gone already, or rolled back whole
        done = answers[0].json()
        assert done["moved"] == 12 and done["still_rejected"] == 0 and sorted(done["ids"]) == held
        repeat = await daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"ids": held},
                                   headers={"Idempotency-Key": "r1"})
        if first.status_code == 200:
            assert repeat.headers.get("Idempotent-Replay") == "true" and repeat.json() == done

        # Entries rejected again stay in the DLQ, with today's reason, as new rows.
        again = await daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"rule": "email_ok"})
        assert again.status_code == 200, again.text
        assert again.json()["moved"] == 0 and again.json()["still_rejected"] == 5
        await until(lambda: _count(tmp_path, "SELECT count(*) FROM p_a") == 222, "the new rows")

    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM p_a") == [(222, 222)]
    assert rows(db, "SELECT id, note FROM p_a WHERE note IS NOT NULL ORDER BY id") == [
        (i, f"n{i}") for i in range(10, 22)]
    left = rows(db, "SELECT id, rule, reason, payload FROM p_a_dlq ORDER BY id")
    assert sorted(json.loads(r[3])["id"] for r in left) == list(range(22, 27))
    assert all(r[1] == "email_ok" and r[0] not in bad for r in left)
    audit = rows(db, "SELECT actor, action, before_state, after_state FROM conduitd_audit "
                     "WHERE action = 'dlq_replay' ORDER BY id")
    assert len(audit) == 2  # one per replay that changed something; none for the refused one
    assert sorted(json.loads(audit[0][2])["ids"]) == held
    assert json.loads(audit[0][3]) == {"moved": 12, "still_rejected": 0}
    assert json.loads(audit[1][3]) == {"moved": 0, "still_rejected": 5}


async def test_discard_deletes_entries_and_keeps_them_in_the_audit_log(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        await populate(tmp_path, daemon)
        bad = [r[0] for r in rows(db, "SELECT id FROM p_a_dlq WHERE rule = 'email_ok' ORDER BY id")]
        chosen = {"ids": bad[:2]}
        assert (await daemon.post("operator-a", "/pipelines/p_a/dlq/discard", json=chosen)).status_code == 403
        assert (await daemon.post("viewer-a", "/pipelines/p_a/dlq/discard", json=chosen)).status_code == 403
        answer = await daemon.post("admin-a", "/pipelines/p_a/dlq/discard", json=chosen)
        assert answer.status_code == 200, answer.text
        assert answer.json()["discarded"] == 2
        missing = await daemon.post("admin-a", "/pipelines/p_a/dlq/discard", json={"ids": [bad[1], bad[2]]})
        assert missing.status_code == 404 and missing.json()["missing"] == [bad[1]]
        assert (await daemon.post("admin-a", "/pipelines/p_a/dlq/discard", json={"ids": []})).status_code == 422
    assert [r[0] for r in rows(db, "SELECT id FROM p_a_dlq WHERE rule = 'email_ok' ORDER BY id")] == bad[2:]
    assert rows(db, "SELECT count(*) FROM p_a_dlq") == [(15,)]
    [(actor, before, after)] = rows(db, "SELECT actor, before_state, after_state FROM conduitd_audit "
                                        "WHERE action = 'dlq_discard'")
    assert actor == "admin-a" and after == json.dumps({"discarded": bad[:2]}).replace(" ", "")
    assert [(e["id"], e["rule"], json.loads(e["payload"])["email"]) for e in json.loads(before)] == [
        (bad[0], "email_ok", "nobody"), (bad[1], "email_ok", "nobody")]
