"""End to end through the CLI, into PostgreSQL and SQLite: JSON array files, Parquet values that no
destination holds as they are (NaN, nanoseconds, dates outside years 1..9999) and missing files.
Every record ends up in exactly one of the table or the DLQ, and no output shows a traceback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime
from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def config(tmp_path: Path, db: Db, path: str) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": path}],
        "destinations": [db.destination],
        "resources": [{"name": "events", "source": "s", "destination": "db"}],
    })


def run(*args: str) -> tuple[int, str]:
    result = conduitd(*args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result.returncode, output


# -- JSON arrays ----------------------------------------------------------------------------------

def test_a_pretty_json_array_is_read_as_records_and_validated(tmp_path: Path, db: Db) -> None:
    (tmp_path / "in").mkdir()
    elements: list[Any] = [{"id": 1, "name": "a"}, {"id": 2, "name": "b, ]"}, 7, {"id": 3, "name": None}]
    (tmp_path / "in" / "orders.json").write_text(json.dumps(elements, indent=2))
    (tmp_path / "in" / "more.json").write_text(json.dumps([{"id": 4, "name": "d"}, {"id": 5, "name": "e"}]))
    path = config(tmp_path, db, str(tmp_path / "in"))
    code, output = run("validate", "-c", str(path))
    assert code == 0, output
    code, output = run("schema", "events", "-c", str(path))
    assert code == 0 and '"name"' in output, output
    code, output = run("--once", "-c", str(path))
    assert code == 0, output
    assert sorted(r["id"] for r in db.table("events")) == [1, 2, 3, 4, 5]
    (rejected,) = db.dlq("events")
    assert rejected["payload"] == 7 and "not an object" in rejected["reason"]
    assert run("--once", "-c", str(path))[0] == 0  # again: nothing new
    assert len(db.table("events")) == 5 and len(db.dlq("events")) == 1


# -- Parquet --------------------------------------------------------------------------------------

def test_parquet_nan_nanoseconds_and_extreme_dates_are_written_or_dead_lettered(tmp_path: Path, db: Db) -> None:
    (tmp_path / "in").mkdir()
    far = np.array([0, 0, 0, 0, 290_000 * 365 * 86_400 * 10**6, -10_000 * 365 * 86_400 * 10**6], dtype="int64")
    pq.write_table(pa.table({
        "id": [1, 2, 3, 4, 5, 6],
        "ratio": [1.5, float("nan"), None, 2.0, 0.0, 0.0],
        "at": pa.array([1_700_000_000_123_456_000, 1_700_000_000_123_456_789, 0, None, 0, 0], pa.timestamp("ns")),
        "day": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2020, 1, 1), None, None, None]),
        "far": pa.array(far, pa.timestamp("us")),
    }), tmp_path / "in" / "a.parquet")
    code, output = run("--once", "-c", str(config(tmp_path, db, str(tmp_path / "in" / "a.parquet"))))
    assert code == 0, output
    assert "NaN" in output and "truncated to microseconds" in output
    rows = {r["id"]: r for r in db.table("events")}
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[2]["ratio"] is None and rows[1]["ratio"] == 1.5
    assert str(rows[1]["at"]).replace("T", " ").startswith("2023-11-14 22:13:20.123456")
    assert str(rows[2]["at"]).replace("T", " ").startswith("2023-11-14 22:13:20.123456")
    assert str(rows[1]["day"]).startswith("0001-01-01") and str(rows[2]["day"]).startswith("9999-12-31")
    dlq = db.dlq("events")
    assert sorted(d["payload"]["id"] for d in dlq) == [5, 6]
    assert all("'far'" in d["reason"] and "0001-01-01 to 9999-12-31" in d["reason"] for d in dlq)


floats = st.floats(allow_infinity=False) | st.none()
nanos = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1) | st.none()
days = st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.none()


@settings(max_examples=20)
@given(st.lists(st.tuples(floats, nanos, days, nanos), min_size=1, max_size=20))
def test_generated_parquet_values_never_stop_the_pipeline(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str,
                                                          values: list[tuple[Any, ...]]) -> None:
    tmp_path = tmp_path_factory.mktemp("parquet")
    (tmp_path / "in").mkdir()
    ratio, at, day, micros = zip(*values, strict=True)
    pq.write_table(pa.table({
        "id": list(range(len(values))),
        "ratio": pa.array(ratio, pa.float64()),
        "at": pa.array(at, pa.timestamp("ns")),
        "day": pa.array(day, pa.date32()),
        "micros": pa.array(micros, pa.timestamp("us")),
        "nested": pa.array([{"f": r, "t": [a]} for r, a in zip(ratio, at, strict=True)],
                           pa.struct([("f", pa.float64()), ("t", pa.list_(pa.timestamp("ns")))])),
    }), tmp_path / "in" / "a.parquet")
    destinations = {"pg": postgres_destination(pg_dsn, tmp_path.name), "lite": sqlite(tmp_path).destination}
    for name, destination in destinations.items():
        path = write_config(tmp_path / f"{name}.yaml", {
            "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in" / "a.parquet")}],
            "destinations": [{**destination, "name": "db"}],
            "resources": [{"name": "events", "source": "s", "destination": "db"}],
        })
        try:
            assert asyncio.run(Runtime(load_config(path), once=True).run()) == 0
            look = Db("postgres", destination, dsn=pg_dsn, schema=destination["schema"]) if name == "pg" \
                else sqlite(tmp_path)
            written = [r["id"] for r in look.table("events")] if "events" in look.tables() else []
            rejected = [d["payload"]["id"] for d in look.dlq("events")] if "events_dlq" in look.tables() else []
            assert sorted(written + rejected) == list(range(len(values)))  # each exactly once
            assert all(r["ratio"] is None or r["ratio"] == r["ratio"] for r in look.table("events")) \
                if written else True  # no NaN
        finally:
            if name == "pg":
                drop_schema(pg_dsn, destination["schema"])


def postgres_destination(dsn: str, name: str) -> dict[str, Any]:
    schema = "p_" + "".join(c for c in name if c.isalnum())[-20:]
    asyncio.run(_execute(dsn, f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return {"name": "db", "type": "postgres", "dsn": dsn, "schema": schema}


def drop_schema(dsn: str, schema: str) -> None:
    asyncio.run(_execute(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- missing files --------------------------------------------------------------------------------

def test_a_missing_input_file_fails_validate_and_once_with_a_config_error(tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    path = config(tmp_path, db, str(tmp_path / "nowhere" / "orders.jsonl"))
    code, output = run("validate", "-c", str(path))
    assert code == 2 and "orders.jsonl" in output and "does not exist" in output
    code, output = run("--once", "-c", str(path))
    assert code == 2 and "orders.jsonl" in output and "does not exist" in output


def test_a_glob_or_directory_matching_nothing_reads_nothing_with_a_warning(tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    (tmp_path / "empty").mkdir()
    for where in (str(tmp_path / "none" / "*.jsonl"), str(tmp_path / "empty")):
        code, output = run("--once", "-c", str(config(tmp_path, db, where)))
        assert code == 0 and "nothing to read" in output
