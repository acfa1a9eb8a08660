"""A table source's committed position is resumed only by the reading it was written under: after
`incremental` names another cursor, or is removed (whole-table reads), `run` and `validate` stop
with a config error (exit 2) saying what changed and how to start over, instead of reading the old
values as other columns' (a raw database error, or a whole-table pass that silently skipped every
row up to the old key). PostgreSQL and MariaDB, through the command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conduitd.core.records import position_text
from tests.helpers.daemon import conduitd, write_config
from tests.helpers.own_database import own_database

BY_TIME = {"column": "updated_at", "strategy": "timestamp"}
BY_QTY = {"column": "qty", "strategy": "sequential"}
ROWS = [(i, f"2026-01-0{i} 10:00:00", 10 * i) for i in range(1, 6)]


@pytest.fixture(scope="module")
def pg_source(pg_dsn: str) -> Iterator[str]:
    yield from own_database(pg_dsn, "conduitd_rchg")


@pytest.fixture(scope="module")
def my_source() -> Iterator[dict[str, Any]]:
    if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
        pytest.importorskip("asyncmy")
    import asyncmy

    host, _, port = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306").partition(":")
    name = f"conduitd_rchg_{uuid.uuid4().hex[:8]}"

    async def admin(*statements: str) -> None:
        conn = await asyncmy.connect(host=host, port=int(port or 3306), user="root", password="", autocommit=True)
        try:
            async with conn.cursor() as cursor:
                for statement in statements:
                    await cursor.execute(statement)
        finally:
            conn.close()

    asyncio.run(admin(f"CREATE DATABASE `{name}`", f"CREATE TABLE `{name}`.items (id int PRIMARY KEY, "
                      "updated_at datetime(6) NOT NULL, qty int NOT NULL, KEY (updated_at))",
                      f"INSERT INTO `{name}`.items VALUES " + ", ".join(f"({i}, '{t}', {q})" for i, t, q in ROWS)))
    try:
        yield {"name": "db", "type": "mysql", "dsn": f"mysql://root@{host}:{port or 3306}/{name}"}
    finally:
        asyncio.run(admin(f"DROP DATABASE `{name}`"))


def pg_section(dsn: str) -> dict[str, Any]:
    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, updated_at timestamp NOT NULL, "
                               "qty int NOT NULL); CREATE INDEX IF NOT EXISTS items_at ON items (updated_at); "
                               "TRUNCATE items")
            await conn.executemany("INSERT INTO items VALUES ($1, $2::text::timestamp, $3)", ROWS)
        finally:
            await conn.close()

    asyncio.run(create())
    return {"name": "db", "type": "postgres", "dsn": dsn}


def config(tmp_path: Path, source: dict[str, Any], incremental: dict[str, str] | None) -> Path:
    pipeline: dict[str, Any] = {"name": "items", "source": "db", "destination": "out", "source_table": "items",
                                "mode": "upsert", "unique_key": ["id"]}
    if incremental is not None:
        pipeline["incremental"] = incremental
    return write_config(tmp_path / "conduitd.yaml", {
        "sources": [source], "destinations": [{"name": "out", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [pipeline]})


def sql(tmp_path: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """One statement on the destination, committed and closed (conduitd opens it alone)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "out.db")) as db, db:
        return db.execute(statement, args).fetchall()


def rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    return sorted(sql(tmp_path, "SELECT id, qty FROM items"))


def committed(tmp_path: Path) -> dict[str, Any]:
    [(text,)] = sql(tmp_path, "SELECT position FROM conduitd_checkpoints WHERE pipeline = 'items'")
    position: dict[str, Any] = json.loads(text)
    return position


def run(path: Path, *more: str) -> Any:
    return conduitd("run", "--once", "-c", str(path), *more)


@pytest.mark.parametrize("database", ["postgres", "mariadb"])
def test_a_position_is_resumed_only_by_the_reading_it_was_written_under(
        database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source = (pg_section(request.getfixturevalue("pg_source")) if database == "postgres"
              else request.getfixturevalue("my_source"))
    first = run(config(tmp_path, source, BY_TIME))
    assert first.returncode == 0, first.stderr
    assert rows(tmp_path) == [(i, q) for i, _, q in ROWS]
    assert committed(tmp_path)["on"] == ["updated_at", "id"]

    for incremental, now in ((BY_QTY, "by the cursor 'qty' then the key (id)"),
                             (None, "whole, in the order of the key (id)")):
        path = config(tmp_path, source, incremental)
        refused = run(path)
        assert refused.returncode == 2, refused.stderr
        assert ("its committed position was read by the cursor 'updated_at' then the key (id), but the config now "
                f"reads {now}") in refused.stderr
        assert "checkpoints reset" in refused.stderr and "Traceback" not in refused.stderr
        checked = conduitd("validate", "-c", str(path))
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert "source: position" in checked.stdout and "invalid" in checked.stdout
    assert rows(tmp_path) == [(i, q) for i, _, q in ROWS]

    # Started over, the whole-table reading loads every row (the old key skipped four before).
    reset = conduitd("checkpoints", "reset", "-c", str(path), "-p", "items")
    assert reset.returncode == 0, reset.stderr
    again = run(path)
    assert again.returncode == 0, again.stderr
    assert "5 records read" in again.stderr
    assert committed(tmp_path)["on"] == ["id"] and committed(tmp_path)["done"] is True


def test_a_position_from_before_on_was_recorded_is_checked_for_its_kind(pg_source: str, tmp_path: Path) -> None:
    source = pg_section(pg_source)
    assert run(config(tmp_path, source, BY_TIME)).returncode == 0
    old = {k: v for k, v in committed(tmp_path).items() if k != "on"}  # as an earlier version wrote it
    sql(tmp_path, "UPDATE conduitd_checkpoints SET position = ? WHERE pipeline = 'items'", position_text(old))
    assert run(config(tmp_path, source, BY_TIME)).returncode == 0  # the same reading resumes it
    sql(tmp_path, "UPDATE conduitd_checkpoints SET position = ? WHERE pipeline = 'items'", position_text(old))
    refused = run(config(tmp_path, source, None))
    assert refused.returncode == 2
    assert "read by a cursor, but the config now reads whole" in refused.stderr
