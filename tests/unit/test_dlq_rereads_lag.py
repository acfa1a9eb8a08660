"""Rejects of rows read again by a polling source's lag window (`Reject.reread`, issue 10) on
the embedded destinations (SQLite, DuckDB, ClickHouse through chdb, Snowflake through fakesnow):
an entry the DLQ table holds already is not added again, while a new reject, a reject whose
payload differs in any character and every reject that is not a re-read still land; a replayed
entry is replayed as before."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig, SqliteDestinationConfig
from conduitd.core.records import Chunk, Reject
from conduitd.destinations import Destination
from conduitd.destinations.base import DlqFilter
from conduitd.destinations.dlq_rereads import unseen
from conduitd.destinations.sqlite import SqliteDestination
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import commit_batch
from conduitd.runtime.replay import replay_entries

PIPELINE = PipelineConfig.model_validate({
    "name": "r", "source": "s", "destination": "db", "table": "t", "mode": "upsert", "unique_key": ["id"],
    "quality_checks": [{"column": "v", "check": "not_null", "action": "dlq"}]})
HIGH = {"cursor": "2026-11-30 12:00:00+00", "key": ["3"]}


def _destination(kind: str, tmp_path: Path) -> Destination:
    if kind == "sqlite":
        return SqliteDestination(SqliteDestinationConfig(name="db", type="sqlite", path=str(tmp_path / "t.db")))
    if kind == "duckdb":
        from conduitd.destinations.duckdb.destination import DuckdbDestination
        from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig

        return DuckdbDestination(DuckdbDestinationConfig(name="db", type="duckdb", path=str(tmp_path / "t.duckdb")))
    if kind == "snowflake":
        from conduitd.destinations.snowflake.destination import SnowflakeDestination
        from conduitd.destinations.snowflake.settings import SnowflakeDestinationConfig

        return SnowflakeDestination(SnowflakeDestinationConfig.model_validate({
            "name": "db", "type": "snowflake", "account": "conduitd-test", "user": "loader", "password": "x",
            "database": "CONDUITD", "schema": "LOADS", "warehouse": "load_wh"}))
    pytest.importorskip("chdb")
    from conduitd.destinations.clickhouse.destination import ClickHouseDestination
    from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig

    return ClickHouseDestination(ClickHouseDestinationConfig(name="db", type="clickhouse", path=str(tmp_path / "ch"),
                                                             database="lag"))


@pytest.fixture(params=["sqlite", "duckdb", "clickhouse", "snowflake"])
async def dest(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Destination]:
    with contextlib.ExitStack() as stack:
        if request.param == "snowflake":  # fakesnow, an emulator on DuckDB, patched into the connector
            fakesnow = pytest.importorskip("fakesnow")
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", UserWarning)  # fakesnow's own notices, not conduitd's
            stack.enter_context(fakesnow.patch())
        d = _destination(request.param, tmp_path)
        await d.open()
        try:
            await d.setup(PIPELINE)
            yield d
        finally:
            await d.close()


async def commit(d: Destination, start: Any, rows: list[dict[str, Any]], rejects: tuple[Reject, ...] = (), *,
                 reread: bool) -> None:
    """A chunk ending at the high water: the first read (from `start`) or a window re-read at it."""
    table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.int64()), ("v", pa.string())]))
    await commit_batch(d, PIPELINE, build_batch([Chunk("s.src", start, HIGH, table, rejects, 1, reread=reread)]))


async def entries(d: Destination) -> list[tuple[str, str | None]]:
    return sorted((e.rule, e.payload) for e in await d.read_dlq(PIPELINE, DlqFilter()))


def decode_reject(payload: str, *, reread: bool) -> Reject:
    return Reject("s.src", {"cursor": "2026-11-30 11:59:00+00", "key": ["9"]}, "column 'd': infinity does not fit",
                  payload, rule="decode", reread=reread)


async def test_a_reread_reject_the_dlq_holds_is_not_added_again_and_a_new_one_lands(dest: Destination) -> None:
    bad = '{"d":"infinity","id":9}'
    await commit(dest, None, [{"id": 1, "v": "a"}, {"id": 2, "v": None}], (decode_reject(bad, reread=False),),
                 reread=False)
    first = await entries(dest)
    assert first == [("decode", bad), ("not_null:v", '{"id":2,"v":null}')]
    # The next runs' windows hand the same rows and rejects over again: nothing new in the DLQ.
    for _ in range(2):
        await commit(dest, HIGH, [{"id": 1, "v": "a"}, {"id": 2, "v": None}], (decode_reject(bad, reread=True),),
                     reread=True)
        assert await entries(dest) == first
    # A late row rejected in the window, and a payload differing only in case: both land.
    await commit(dest, HIGH, [{"id": 2, "v": None}, {"id": 4, "v": None}],
                 (decode_reject(bad.upper(), reread=True),), reread=True)
    assert await entries(dest) == sorted([*first, ("not_null:v", '{"id":4,"v":null}'),
                                          ("decode", bad.upper())])


async def test_rejects_that_are_not_reread_are_all_written(dest: Destination) -> None:
    await commit(dest, None, [{"id": 2, "v": None}], reread=False)
    await commit(dest, HIGH, [{"id": 2, "v": None}], reread=False)  # e.g. a Kafka record sent twice
    assert len(await entries(dest)) == 2


async def test_an_entry_of_the_window_is_replayed_as_before(dest: Destination) -> None:
    await commit(dest, None, [{"id": 2, "v": None}], reread=False)
    [entry] = await dest.read_dlq(PIPELINE, DlqFilter())
    assert await replay_entries(dest, PIPELINE, [entry]) == (0, 1)  # rejected again: one entry still
    await commit(dest, HIGH, [{"id": 2, "v": None}], reread=True)
    [entry] = await dest.read_dlq(PIPELINE, DlqFilter())
    lenient = PIPELINE.model_copy(update={"quality_checks": []})
    assert await replay_entries(dest, lenient, [entry]) == (1, 0)
    assert await dest.read_dlq(PIPELINE, DlqFilter()) == []
    # Gone from the DLQ and the row still rejected by the rules at the next window: it lands again.
    await commit(dest, HIGH, [{"id": 2, "v": None}], reread=True)
    assert len(await entries(dest)) == 1


def test_unseen_compares_exactly_and_keeps_one_of_repeats_within_a_batch() -> None:
    a = Reject("p", None, "why", "{}", reread=True)
    plain = Reject("p", None, "why", "{}")
    assert unseen([a, a, plain, plain], []) == [a, plain, plain]
    assert unseen([a, plain], [("p", "decode", "why", "{}")]) == [plain]
    assert unseen([a], [("p", "decode", "WHY", "{}"), ("q", "decode", "why", "{}")]) == [a]
