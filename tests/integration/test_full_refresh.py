"""`mode: full_refresh` (seed: `write_mode: truncate | replace`) against the real PostgreSQL,
MariaDB and SQLite, through the real CLI: a run replaces the table's rows with the source's, over
many batches, and readers never see an empty or a mixed table; a SIGKILLed run leaves the old
rows and the rerun loads exactly the source; unbounded sources and daemon mode are refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, start_conduitd, stop_daemon, tail, write_config
from tests.helpers.destinations import Db
from tests.helpers.mysql import MysqlView, make_db

KINDS = ["postgres", "sqlite", "mysql"]


def _source(path: Path, ids: range) -> None:
    path.write_text("".join(json.dumps({"id": i, "name": f"n{i}", "code": f"{i:05d}"}) + "\n" for i in ids))


def _config(tmp_path: Path, db: Db, data: Path, **resource: Any) -> Path:
    return write_config(tmp_path / "conduitd.yml", {
        "sources": [{"name": "src", "type": "file", "path": str(data)}],
        "destinations": [db.destination],
        "resources": [{"name": "items", "source": "src", "destination": "db", "mode": "full_refresh",
                       "batch": {"max_rows": 50}, **resource}]})


def _ids(db: Db) -> list[int]:
    return [int(r["id"]) for r in db.table("items")]


def _run_once(config: Path) -> None:
    result = conduitd("run", "-c", str(config), "--once")
    assert result.returncode == 0, result.stdout + result.stderr


def _counter(db: Db) -> tuple[Callable[[], int], Callable[[], None]]:
    """count(*) of the table from a connection of its own (each read sees what is committed)."""
    if db.kind == "sqlite":
        assert db.path is not None
        conn = sqlite3.connect(db.path, timeout=60, check_same_thread=False)
        return (lambda: int(conn.execute('SELECT count(*) FROM "items"').fetchone()[0])), conn.close
    if db.kind == "mysql":
        view = MysqlView(db.schema)
        return (lambda: int(view.fetch(f"SELECT count(*) AS n FROM {view.table('items')}")[0]["n"])), view.close
    import asyncpg

    loop = asyncio.new_event_loop()
    pg = loop.run_until_complete(asyncpg.connect(db.dsn))

    def close() -> None:
        loop.run_until_complete(pg.close())
        loop.close()

    return (lambda: int(loop.run_until_complete(pg.fetchval(f"SELECT count(*) FROM {db.name('items')}")))), close


@pytest.mark.parametrize("kind", KINDS)
def test_rows_are_replaced_and_readers_see_old_or_new(kind: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    db = make_db(kind, request, tmp_path)
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 301))
    config = _config(tmp_path, db, data)
    _run_once(config)
    assert _ids(db) == list(range(1, 301))

    _source(data, range(101, 451))  # 1-100 gone, 301-450 new: 350 rows in 7 batches
    count, close = _counter(db)
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(count())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _run_once(config)
    finally:
        done.set()
        reader.join()
        seen.append(count())
        close()
    assert _ids(db) == list(range(101, 451))
    assert [r["code"] for r in db.table("items")][:2] == ["00101", "00102"]
    assert set(seen) <= {300, 350}, sorted(set(seen))
    assert seen[-1] == 350
    assert db.checkpoints() == {}, "the next run must read the whole source again"
    assert not [t for t in db.tables() if t.endswith("__conduitd_refresh")]

    _run_once(config)  # nothing changed: the same rows again, not twice
    assert _ids(db) == list(range(101, 451))


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_mid_run_keeps_old_rows_and_rerun_loads_the_source(kind: str, request: pytest.FixtureRequest,
                                                                   tmp_path: Path) -> None:
    db = make_db(kind, request, tmp_path)
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 11))
    config = _config(tmp_path, db, data)
    _run_once(config)
    _source(data, range(5, 40_005))
    log = tmp_path / "run.log"
    proc = start_conduitd("run", "-c", str(config), "--once", log=log)
    try:
        deadline = time.monotonic() + 120
        while not db.checkpoints():  # the staging load has committed a batch
            assert proc.poll() is None, tail(log)
            assert time.monotonic() < deadline, tail(log)
            time.sleep(0.02)
        proc.kill()
    finally:
        stop_daemon(proc)
    assert _ids(db) == list(range(1, 11)), "a killed run leaves the table as it was"
    _run_once(config)
    assert _ids(db) == list(range(5, 40_005))


@pytest.mark.parametrize("kind", KINDS)
def test_dlq_and_rules_work_as_usual(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = make_db(kind, request, tmp_path)
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 121))
    config = _config(tmp_path, db, data, quality_checks=[
        {"column": "id", "check": "range", "min": 0, "max": 100, "action": "dlq"}])
    _run_once(config)
    assert _ids(db) == list(range(1, 101))
    assert sorted(r["payload"]["id"] for r in db.dlq("items")) == list(range(101, 121))


def test_refused_for_kafka_and_kinesis_at_load(tmp_path: Path) -> None:
    for source in ({"name": "src", "type": "kafka", "brokers": "127.0.0.1:9", "topics": ["t"], "group_id": "g"},
                   {"name": "src", "type": "kinesis", "stream": "s", "region": "us-east-1"}):
        config = tmp_path / "c.yml"
        config.write_text(
            "sources:\n"
            f"  - {json.dumps(source)}\n"
            "destinations:\n"
            f"  - {{name: db, type: sqlite, path: {tmp_path / 'x.db'}}}\n"
            "resources:\n"
            "  - name: items\n"
            "    source: src\n"
            "    destination: db\n"
            "    mode: full_refresh\n")
        result = conduitd("validate", "-c", str(config))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "c.yml:9: resources[0].mode: mode `full_refresh`" in result.stderr, result.stderr
        assert f"a {source['type']} source never ends" in result.stderr


def test_refused_in_daemon_mode(tmp_path: Path) -> None:
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 3))
    db = Db("sqlite", {"name": "db", "type": "sqlite", "path": str(tmp_path / "x.db")}, path=tmp_path / "x.db")
    result = conduitd("run", "-c", str(_config(tmp_path, db, data)), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "resources.items.mode: `full_refresh`" in result.stderr and "--once" in result.stderr, result.stderr
    assert not (tmp_path / "x.db").exists() or "items" not in Db.tables(db)


@pytest.mark.parametrize("write_mode", ["truncate", "replace"])
def test_seed_write_modes_replace_the_table(write_mode: str, tmp_path: Path) -> None:
    data = tmp_path / "items.json"
    _source(data, range(1, 61))
    path = tmp_path / "out.db"
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "version: '1.0'\n"
        "sources:\n"
        f"  - {{name: items_file, type: json, path: {data}}}\n"
        "destinations:\n"
        f"  - {{name: out, type: sqlite, path: {path}, table: items, write_mode: {write_mode}}}\n"
        "resources:\n"
        "  - {name: items, source: items_file, destination: out, query: n/a}\n")
    db = Db("sqlite", {}, path=path)
    _run_once(config)
    _source(data, range(31, 91))
    _run_once(config)
    assert _ids(db) == list(range(31, 91))


def test_validate_and_the_dry_run_refuse_it_where_the_run_would(tmp_path: Path) -> None:
    """A destination that cannot replace a table atomically (ClickHouse): `run` refuses it at
    start, and `validate` and `--dry-run` say so too, instead of passing."""
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 3))
    config = write_config(tmp_path / "conduitd.yml", {
        "sources": [{"name": "src", "type": "file", "path": str(data)}],
        "destinations": [{"name": "out", "type": "clickhouse", "path": str(tmp_path / "ch")}],
        "resources": [{"name": "items", "source": "src", "destination": "out", "mode": "full_refresh"}]})
    for args in (("validate",), ("run", "--dry-run"), ("run", "--once")):
        result = conduitd(*args, "-c", str(config))
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert "cannot replace a table's contents atomically" in result.stdout + result.stderr, args
    assert not (tmp_path / "ch").exists() or not any((tmp_path / "ch").rglob("*items*"))
