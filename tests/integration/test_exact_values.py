"""Values a type could alter are stored as written, end to end through the CLI on both
destinations: integers beyond int64 (JSON, Parquet uint64), negative zero and zero-padded
fractions in CSV, and booleans in SQLite (which has no boolean type)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite

BIG = [2**64 - 1, 2**63 + 1, 2**63, 2**63 - 1, 0, 7]


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def run_once(tmp_path: Path, db: Db, name: str, data: bytes) -> None:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / name).write_bytes(data)
    config = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / name)}],
        "destinations": [db.destination],
        "resources": [{"name": "t", "source": "files", "destination": "db", "table": "t"}],
    })
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def stored(db: Db, column: str) -> list[tuple[Any, str]]:
    """(value, SQLite storage class or PostgreSQL type) of `column`, by id."""
    if db.kind == "postgres":
        rows = db.rows(f'SELECT "{column}" AS v, pg_typeof("{column}")::text AS k FROM {db.name("t")} ORDER BY id')
    else:
        rows = db.rows(f'SELECT "{column}" AS v, typeof("{column}") AS k FROM {db.name("t")} ORDER BY id')
    return [(r["v"], r["k"]) for r in rows]


def test_a_json_integer_beyond_int64_is_stored_without_a_fraction(tmp_path: Path, db: Db) -> None:
    """`{"u":18446744073709551615}` was stored as 18446744073709551615.00 (numeric(38,2) / TEXT)."""
    run_once(tmp_path, db, "a.jsonl", b'{"id":1,"u":18446744073709551615}\n{"id":2,"u":-9223372036854775809}\n')
    if db.kind == "postgres":
        assert db.columns("t")["u"][0] == "numeric(38,0)"
        assert [str(v) for v, _ in stored(db, "u")] == ["18446744073709551615", "-9223372036854775809"]
    else:
        assert stored(db, "u") == [("18446744073709551615", "text"), ("-9223372036854775809", "text")]
    assert not db.dlq("t")


def test_parquet_uint64_beyond_int64_is_stored_exactly(tmp_path: Path, db: Db) -> None:
    """SQLite made 2**64-1 the REAL 1.8446744073709552e19 and 2**63+1 ...776e18."""
    table = pa.table({"id": list(range(len(BIG))), "u": pa.array(BIG, pa.uint64())})
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "a.parquet")
    run_once(tmp_path, db, "a.parquet", (tmp_path / "in" / "a.parquet").read_bytes())
    if db.kind == "postgres":
        assert db.columns("t")["u"][0] == "numeric(20,0)"
        assert [v for v, _ in stored(db, "u")] == [Decimal(v) for v in BIG]
    else:
        assert stored(db, "u") == [(str(v), "text") for v in BIG]
    assert not db.dlq("t")


def test_csv_negative_zero_and_padded_fractions_read_back_as_written(tmp_path: Path, db: Db) -> None:
    """`-0` became the SQLite REAL 0.0: a column is typed only if every value reads back as written."""
    cells = {"a": ["-0", "1.5"], "b": ["-0.0", "2"], "c": ["0.10", "0.2"], "d": ["0", "-1.5"]}
    data = "id,a,b,c,d\n" + "".join(f"{i},{cells['a'][i]},{cells['b'][i]},{cells['c'][i]},{cells['d'][i]}\n"
                                    for i in range(2))
    run_once(tmp_path, db, "a.csv", data.encode())
    for name in "abc":
        assert [str(v) for v, _ in stored(db, name)] == cells[name]
    assert [float(v) for v, _ in stored(db, "d")] == [0.0, -1.5]  # a real float column: typed
    assert not db.dlq("t")


def test_csv_and_json_booleans_read_back_as_written(tmp_path: Path, db: Db) -> None:
    """SQLite stored `true`/`false` as INTEGER 1/0; it has no boolean type, so they stay text.
    PostgreSQL gives them its boolean type."""
    run_once(tmp_path, db, "a.csv", b"id,ok\n1,true\n2,false\n3,\n")
    if db.kind == "postgres":
        assert stored(db, "ok") == [(True, "boolean"), (False, "boolean"), (None, "boolean")]
    else:
        assert stored(db, "ok") == [("true", "text"), ("false", "text"), (None, "null")]
    assert not db.dlq("t")


def test_json_booleans_in_sqlite_are_text(tmp_path: Path, db: Db) -> None:
    run_once(tmp_path, db, "a.jsonl", b'{"id":1,"ok":true}\n{"id":2,"ok":false}\n')
    expected = [(True, "boolean"), (False, "boolean")] if db.kind == "postgres" else [("true", "text"),
                                                                                      ("false", "text")]
    assert stored(db, "ok") == expected


def test_booleans_into_an_existing_sqlite_integer_column_keep_its_type(tmp_path: Path) -> None:
    """An existing table's column type decides: a user's INTEGER column receives 1/0."""
    db = sqlite(tmp_path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, ok INTEGER)")
    run_once(tmp_path, db, "a.csv", b"id,ok\n1,true\n2,false\n")
    assert stored(db, "ok") == [(1, "integer"), (0, "integer")]


def test_uint64_into_an_existing_sqlite_integer_column_is_exact_or_dead_lettered(tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, u INTEGER)")
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "u": pa.array([2**64 - 1, 5], pa.uint64())}), tmp_path / "in" / "a.parquet")
    run_once(tmp_path, db, "a.parquet", (tmp_path / "in" / "a.parquet").read_bytes())
    kept = {v for v, _ in stored(db, "u")}
    dead = [d["payload"]["id"] for d in db.dlq("t")] if "t_dlq" in db.tables() else []
    assert 5 in kept and (str(2**64 - 1) in kept or dead == [1])
