"""Parquet rows the PostgreSQL destination refuses for their field names (a repeated column, an
empty column name) reach the DLQ with their row as position, `{"row": n}`, never null (issue 8,
D11), through the real CLI; every row is in exactly one of the table or the DLQ."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres


@pytest.fixture
def db(request: pytest.FixtureRequest) -> Db:
    return postgres(request)


def run(tmp_path: Path, db: Db) -> None:
    config = write_config(tmp_path / "conduitd.yaml", {
        "service": {"once_retry_timeout": "2s"},
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / "*.parquet")}],
        "destinations": [db.destination],
        "resources": [{"name": "events", "source": "files", "destination": "db", "batch": {"max_rows": 100000}}],
    })
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_rows_refused_for_their_field_names_point_at_their_parquet_row(tmp_path: Path, db: Db) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_arrays([pa.array([0, 1, 2]), pa.array([5, 6, 7]), pa.array([8, None, 9])],
                                        names=["id", "n", "n"]), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.Table.from_arrays([pa.array([10, 11, 12]), pa.array(["x", None, "z"])],
                                        names=["id", ""]), tmp_path / "in" / "b.parquet")
    run(tmp_path, db)
    dlq = {(r["partition"].rsplit("/", 1)[-1], r["payload"]["id"]): r["position"] for r in db.dlq("events")}
    stored = [r["id"] for r in db.table("events")]
    assert dlq == {("a.parquet", 0): {"row": 1}, ("a.parquet", 1): {"row": 2}, ("a.parquet", 2): {"row": 3},
                   ("b.parquet", 10): {"row": 1}, ("b.parquet", 12): {"row": 3}}
    assert stored == [11]  # its empty-named field is null: nothing is lost by leaving it out
