"""The shared SQL bookkeeping on a real SQLite file: triggers a user adds do not confuse it, a
refusal at a step other than writing rows is an error of conduitd's tree, times keep their format."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig, SqliteDestinationConfig
from conduitd.core.records import Chunk, Reject
from conduitd.destinations.base import DlqFilter
from conduitd.destinations.sqlite import SqliteDestination
from conduitd.errors import CheckpointConflict, ConduitError
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import commit_batch

PIPELINE = PipelineConfig(name="r", source="s", destination="db", table="t")


async def opened(path: Path) -> SqliteDestination:
    d = SqliteDestination(SqliteDestinationConfig(name="db", type="sqlite", path=str(path)))
    await d.open()
    await d.setup(PIPELINE)
    return d


async def commit(d: SqliteDestination, start: int | None, end: int, rows: list[dict[str, Any]],
                 rejects: tuple[Reject, ...] = ()) -> Any:
    chunk = Chunk("p", None if start is None else {"offset": start}, {"offset": end}, pa.Table.from_pylist(rows),
                  rejects, 1)
    return await commit_batch(d, PIPELINE, build_batch([chunk]))


def run_sql(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        with db:
            return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_an_audit_trigger_on_the_checkpoints_is_no_conflict(tmp_path: Path) -> None:
    d = await opened(tmp_path / "t.db")
    try:
        run_sql(tmp_path / "t.db", "CREATE TABLE audit (what TEXT)")
        run_sql(tmp_path / "t.db", "CREATE TRIGGER a AFTER UPDATE ON conduitd_checkpoints BEGIN "
                                   "INSERT INTO audit VALUES ('moved'); END")
        run_sql(tmp_path / "t.db", "CREATE TRIGGER b AFTER INSERT ON conduitd_checkpoints BEGIN "
                                   "INSERT INTO audit VALUES ('new'); END")
        for start, end in ((None, 1), (1, 2), (2, 3)):
            await commit(d, start, end, [{"id": end}])
        assert await d.load_checkpoints("r") == {"p": {"offset": 3}}
        assert run_sql(tmp_path / "t.db", "SELECT count(*) FROM audit") == [(3,)]
    finally:
        await d.close()


async def test_a_position_stored_as_other_text_of_the_same_json_is_resumed(tmp_path: Path) -> None:
    """A checkpoint written by hand or by another tool (other key order, spaces) is the same
    position: the next commit after it is no conflict (it was refused forever: a --once run hung
    stamping its lease). Another position is still a conflict."""
    d = await opened(tmp_path / "t.db")
    try:
        await commit(d, None, 1, [{"id": 1}])
        run_sql(tmp_path / "t.db", """UPDATE conduitd_checkpoints SET position = '{ "offset" : 1 }'""")
        await commit(d, 1, 2, [{"id": 2}])
        assert await d.load_checkpoints("r") == {"p": {"offset": 2}}
        run_sql(tmp_path / "t.db", """UPDATE conduitd_checkpoints SET position = '{ "offset" : 7 }'""")
        with pytest.raises(CheckpointConflict, match="another writer advanced it"):
            await commit(d, 2, 3, [{"id": 3}])
        assert run_sql(tmp_path / "t.db", "SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    finally:
        await d.close()


async def test_a_dlq_row_the_table_refuses_fails_the_batch_as_a_conduit_error(tmp_path: Path) -> None:
    d = await opened(tmp_path / "t.db")
    try:
        await commit(d, None, 1, [{"id": 1}])
        run_sql(tmp_path / "t.db", "CREATE TRIGGER no_dlq BEFORE INSERT ON t_dlq BEGIN "
                                   "SELECT RAISE(ABORT, 'no dead letters here'); END")
        with pytest.raises(ConduitError, match="no dead letters here"):
            await commit(d, 1, 3, [{"id": 2}], (Reject("p", {"offset": 3}, "not json", "{"),))
        assert await d.load_checkpoints("r") == {"p": {"offset": 1}}
        assert run_sql(tmp_path / "t.db", "SELECT id FROM t") == [(1,)]
    finally:
        await d.close()


async def test_checkpoint_times_keep_their_local_iso_format(tmp_path: Path) -> None:
    d = await opened(tmp_path / "t.db")
    try:
        await commit(d, None, 1, [{"id": 1}])
        [(text,)] = run_sql(tmp_path / "t.db", "SELECT updated_at FROM conduitd_checkpoints")
        when = datetime.fromisoformat(text)
        assert when.tzinfo is not None and not text.endswith("Z")
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)
        [row] = await d.list_checkpoints("r")
        assert row.updated_at == when
    finally:
        await d.close()


async def test_dlq_time_filters_compare_in_utc_whatever_the_offset_given(tmp_path: Path) -> None:
    d = await opened(tmp_path / "t.db")
    try:
        await commit(d, None, 2, [{"id": 1}], (Reject("p", {"offset": 2}, "not json", "{"),))
        now = datetime.now(UTC)
        far_east = timezone(timedelta(hours=14))
        assert len(await d.read_dlq(PIPELINE, DlqFilter(since=(now - timedelta(minutes=5)).astimezone(far_east)))) == 1
        assert len(await d.read_dlq(PIPELINE, DlqFilter(since=(now + timedelta(minutes=5)).astimezone(far_east)))) == 0
        assert len(await d.read_dlq(PIPELINE, DlqFilter(until=(now + timedelta(minutes=5)).astimezone(far_east)))) == 1
    finally:
        await d.close()
