"""File -> Snowflake through the real command: `conduitd run --once` in a subprocess under the
fakesnow emulator (`python -m fakesnow -d DIR -m conduitd ...`: the connector patched, the
databases kept as DuckDB files in DIR), then the tables read back with fakesnow from DIR and
checked row by row, for an append and an upsert pipeline. A second run writes nothing; lines
appended to the inputs afterwards are loaded by the next run, and only they."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.daemon import write_config

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("fakesnow")  # the test extra; under the test script it must be installed

DATABASE, SCHEMA = "CONDUITD", "LOADS"
APPENDS, UPSERTS = "LOADS_A", "LOADS_U"
"""Schemas of the main test's two destinations (one each; the last test shares one)."""
_BASE = datetime(2026, 3, 1, tzinfo=UTC)


def record(n: int, key: int, version: int) -> dict[str, Any]:
    """The n-th input record; `key` is its id, `version` makes each write of a key differ."""
    return {"id": key, "name": f"name-{key}-v{version} ünï", "score": n / 8 - 3.5,
            "ts": (_BASE + timedelta(seconds=n, microseconds=17 * n + 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "active": n % 3 == 0}


def expected_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["id"], r["name"], r["score"], datetime.fromisoformat(r["ts"].replace("Z", "+00:00")), r["active"])


def append_lines(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


def conduitd_under_fakesnow(db: Path, config: Path, *pipelines: str) -> subprocess.CompletedProcess[str]:
    """`conduitd run --once -c CONFIG [-p PIPELINE ...]` with fakesnow patched in, its databases in `db`."""
    return subprocess.run([sys.executable, "-m", "fakesnow", "-d", str(db), "-m", "conduitd",
                           "run", "--once", "-c", str(config), *(a for p in pipelines for a in ("-p", p))],
                          capture_output=True, text=True, timeout=180, check=False)


def run_conduitd(db: Path, config: Path, *pipelines: str) -> None:
    done = conduitd_under_fakesnow(db, config, *pipelines)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def read_back(db: Path, *sql: str) -> list[list[tuple[Any, ...]]]:
    """Run each query against the databases in `db` (fakesnow patched in this process for it)."""
    import fakesnow
    import snowflake.connector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fakesnow's notice about copying results
        with fakesnow.patch(db_path=db):
            conn = snowflake.connector.connect(account="x", user="reader", password="x", database=DATABASE,
                                               schema=SCHEMA)
            try:
                results = []
                for statement in sql:
                    cursor = conn.cursor()
                    cursor.execute(statement)
                    results.append([tuple(r) for r in cursor.fetchall()])
                return results
            finally:
                conn.close()


def table(name: str, schema: str = SCHEMA) -> str:
    return f'"{DATABASE}"."{schema}"."{name}"'


def snapshot(db: Path, appends: str, upserts: str) -> tuple[list[tuple[Any, ...]], dict[int, tuple[Any, ...]],
                                                             list[tuple[Any, ...]]]:
    """The appended rows (sorted), the upserted rows by id, and the stored checkpoints, from
    the schemas `appends` and `upserts`."""
    columns = '"id", "name", "score", "ts", "active"'
    appended, upserted, *checkpoints = read_back(
        db,
        f'SELECT {columns} FROM {table("appended", appends)} ORDER BY "id"',
        f'SELECT {columns} FROM {table("upserted", upserts)} ORDER BY "id"',
        *dict.fromkeys(f"SELECT * FROM {table('conduitd_checkpoints', s)} ORDER BY 1, 2" for s in (appends, upserts)))
    by_id = {r[0]: r for r in upserted}
    assert len(by_id) == len(upserted), "an id is in the upserted table twice"
    return appended, by_id, [c for found in checkpoints for c in found]


def normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row read back, its timestamp in UTC (fakesnow returns it with the session's zone)."""
    return (*row[:3], row[3].astimezone(UTC), row[4])


def two_pipelines(tmp_path: Path, appended: list[dict[str, Any]], upserts: list[dict[str, Any]],
                  schemas: tuple[str, str]) -> Path:
    """A config: `appends` loads events.jsonl into `appended`, `upserts` changes.jsonl into
    `upserted` by id, into Snowflake destinations on the two `schemas` (one destination if equal)."""
    events, changes = tmp_path / "events.jsonl", tmp_path / "changes.jsonl"
    append_lines(events, appended)
    append_lines(changes, upserts)
    return write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "events", "type": "file", "path": str(events)},
                    {"name": "changes", "type": "file", "path": str(changes)}],
        "destinations": [{"name": f"wh_{s}", "type": "snowflake", "account": "conduitd-test", "user": "loader",
                          "password": "not-checked", "database": DATABASE, "schema": s}
                         for s in dict.fromkeys(schemas)],
        "resources": [
            {"name": "appends", "source": "events", "destination": f"wh_{schemas[0]}", "table": "appended",
             "batch": {"max_rows": 250}},
            {"name": "upserts", "source": "changes", "destination": f"wh_{schemas[1]}", "table": "upserted",
             "mode": "upsert", "unique_key": ["id"], "batch": {"max_rows": 250}}],
    })


def test_file_to_snowflake_append_and_upsert_through_the_command(tmp_path: Path) -> None:
    db = tmp_path / "snowflake"
    db.mkdir()
    appended = [record(n, 10_000 + n, 0) for n in range(700)]
    upserts = [record(n, n % 150, n // 150) for n in range(700)]  # 150 keys, written up to 5 times
    config = two_pipelines(tmp_path, appended, upserts, (APPENDS, UPSERTS))

    def check(appended: list[dict[str, Any]], upserts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows, by_id, checkpoints = snapshot(db, APPENDS, UPSERTS)
        assert [normal(r) for r in rows] == sorted(expected_row(r) for r in appended)
        last = {r["id"]: expected_row(r) for r in upserts}
        assert {k: normal(v) for k, v in by_id.items()} == last
        return checkpoints

    run_conduitd(db, config)
    first = check(appended, upserts)
    assert len(first) == 2, first

    run_conduitd(db, config)  # nothing new in the inputs: nothing written
    assert check(appended, upserts) == first

    more = [record(n, 10_000 + n, 0) for n in range(700, 760)]
    changed = [record(n, n % 200, n // 150) for n in range(700, 800)]  # 50 new keys, 50 rewritten
    append_lines(tmp_path / "events.jsonl", more)
    append_lines(tmp_path / "changes.jsonl", changed)
    run_conduitd(db, config)
    third = check(appended + more, upserts + changed)
    assert third != first


def test_two_pipelines_into_one_new_snowflake_database_in_one_run(tmp_path: Path) -> None:
    db = tmp_path / "snowflake"
    db.mkdir()
    appended = [record(n, 10_000 + n, 0) for n in range(50)]
    upserts = [record(n, n % 20, n // 20) for n in range(50)]
    run_conduitd(db, two_pipelines(tmp_path, appended, upserts, (SCHEMA, SCHEMA)))
    rows, by_id, _ = snapshot(db, SCHEMA, SCHEMA)
    assert len(rows) == 50 and len(by_id) == 20
