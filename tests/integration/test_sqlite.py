"""The SQLite destination (the embedded default): the same commit protocol as PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig, SqliteDestinationConfig
from conduitd.core.records import Batch, Chunk
from conduitd.destinations.sqlite import SqliteDestination
from conduitd.errors import CheckpointConflict
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import commit_batch


def batch(rows: list[dict[str, Any]], start: int | None, end: int) -> Batch:
    return build_batch([Chunk("p", None if start is None else {"offset": start}, {"offset": end},
                              pa.Table.from_pylist(rows), (), 1)])


async def commit(dest: Any, res: PipelineConfig, b: Batch) -> Any:
    """Prepare and commit one batch, as the pipeline does."""
    return await commit_batch(dest, res, b)


@pytest.fixture
async def dest(tmp_path: Path) -> Any:
    d = SqliteDestination(SqliteDestinationConfig(name="db", type="sqlite", path=str(tmp_path / "t.db")))
    await d.open()
    yield d
    await d.close()
    await d.close()  # closing twice is harmless


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(tmp_path / "t.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_upsert_last_row_wins_and_checkpoints_chain(dest: Any, tmp_path: Path) -> None:
    res = PipelineConfig(name="r", source="s", destination="db", table="t", mode="upsert", unique_key=("id",))
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2, "v": "c"}], None, 3))
    await commit(dest, res, batch([{"id": 2, "v": "d", "new": 1.5}], 3, 4))
    assert query(tmp_path, "SELECT id, v, new FROM t ORDER BY id") == [(1, "b", None), (2, "d", 1.5)]
    with pytest.raises(CheckpointConflict):
        await commit(dest, res, batch([{"id": 9, "v": "x"}], 3, 5))
    assert query(tmp_path, "SELECT count(*) FROM t") == [(2,)]
    assert await dest.load_checkpoints("r") == {"p": {"offset": 4}}


async def test_refused_rows_are_isolated_into_the_dlq(dest: Any, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    db.commit()
    db.close()
    res = PipelineConfig(name="r", source="s", destination="db", table="t")
    await dest.setup(res)
    result = await commit(dest, res, batch(
        [{"id": 1, "name": "a"}, {"id": 2, "name": None}, {"id": 1, "name": "dup"}, {"id": 3, "name": "c"}], None, 4))
    assert query(tmp_path, "SELECT id, name FROM t ORDER BY id") == [(1, "a"), (3, "c")]
    dlq = query(tmp_path, "SELECT rule, reason, payload FROM t_dlq ORDER BY id")
    assert [(r[0], r[2]) for r in dlq] == [("refused", '{"id":2,"name":null}'), ("refused", '{"id":1,"name":"dup"}')]
    assert "NOT NULL" in dlq[0][1] and "UNIQUE" in dlq[1][1]
    assert result.rows_written == 2 and result.dlq_rows == 2
