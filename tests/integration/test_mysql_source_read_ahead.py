"""The MySQL/MariaDB table source's read-ahead (the next chunk read while one is decoded and
passed on) against the real server: a read from another position drops what was read ahead;
closing cancels a read ahead and a new connection reads on; a connection killed under a read
ahead is a lost connection and nothing is skipped or read twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conduitd.config import PipelineConfig
from conduitd.sources.tables.mysql import MysqlReader
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig
from conduitd.sources.tables.poller import Read
from tests.integration.test_mysql_source import HOST, PORT_NUMBER, my, my_database, my_run

__all__ = ["my", "my_database"]  # the fixtures, used by name

INCREMENTAL = {"column": "ts", "strategy": "timestamp"}


@pytest.fixture
async def numbered(my: Any, my_database: str) -> AsyncIterator[Any]:
    """A function making table `t` with ids 1..n, timestamps an hour old (readable at once)."""
    async def make(count: int) -> None:
        await my_run(my, "DROP TABLE IF EXISTS t")
        await my_run(my, "CREATE TABLE t (id int PRIMARY KEY, ts datetime(6) NOT NULL, v text, KEY (ts, id))")
        await my_run(my, f"INSERT INTO t SELECT seq, NOW(6) - INTERVAL 1 HOUR + INTERVAL (seq * 1000) MICROSECOND, "
                         f"REPEAT('x', 50) FROM seq_1_to_{count}")
    yield make
    await my_run(my, "DROP TABLE IF EXISTS t")


def reader(database: str) -> MysqlReader:
    config = MysqlSourceConfig.model_validate({"name": "db", "type": "mysql", "host": HOST, "port": PORT_NUMBER,
                                              "user": "root", "database": database})
    return MysqlReader(config, PipelineConfig.model_validate(
        {"name": "p", "source": "db", "destination": "wh", "source_table": "t", "incremental": INCREMENTAL}))


def ids(read: Read | None) -> list[int]:
    assert read is not None
    return [int(i) for i in read.rows.column("id").to_pylist()]


async def test_a_read_from_another_position_drops_what_was_read_ahead(numbered: Any, my_database: str) -> None:
    await numbered(7)
    source = reader(my_database)
    await source.connect()
    try:
        plan = await source.plan()
        first = await source.read(plan, None, 2, "t")
        assert first is not None and first.last is not None and ids(first) == [1, 2]
        assert source._ahead is not None, "a full chunk starts the next read ahead"
        again = await source.read(plan, None, 2, "t")  # back to the start (read ahead: from 2)
        assert again is not None and again.last is not None and ids(again) == [1, 2]
        after_two = {**plan.position_after(again.last, None), "lease": 7}
        assert ids(await source.read(plan, after_two, 2, "t")) == [3, 4]
        assert ids(await source.read(plan, after_two, 3, "t")) == [3, 4, 5]  # another limit: read again
        assert ids(await source.read(plan, {"cursor": first.last[0], "key": ["1"]}, 10, "t")) == [2, 3, 4, 5, 6, 7]
    finally:
        await source.close()


async def test_closing_while_a_chunk_is_read_ahead_cancels_it_and_a_new_connection_reads_on(
        numbered: Any, my_database: str) -> None:
    await numbered(60_000)
    source = reader(my_database)
    await source.connect()
    plan = await source.plan()
    first = await source.read(plan, None, 25_000, "t")
    assert first is not None and first.last is not None
    await source.close()  # the next 25,000 rows are being read now (or are read)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("read ahead")] == []
    await source.connect()
    try:
        second = await source.read(plan, plan.position_after(first.last, None), 25_000, "t")
        assert second is not None and ids(second)[:1] == [25_001] and second.count == 25_000
    finally:
        await source.close()


async def test_a_connection_killed_under_a_read_ahead_is_a_lost_connection_and_nothing_is_skipped(
        numbered: Any, my: Any, my_database: str) -> None:
    await numbered(30_000)
    source = reader(my_database)
    await source.connect()
    plan = await source.plan()
    seen: list[int] = []
    position: dict[str, Any] | None = None
    lost = 0
    try:
        while True:
            try:
                read = await source.read(plan, position, 10_000, "t")
            except source.errors as exc:
                assert source.lost(exc), exc
                lost += 1
                await source.connect()
                continue
            assert read is not None
            seen += ids(read)
            if read.last is None:
                break
            position = plan.position_after(read.last, position)
            if lost == 0 and len(seen) == 10_000:  # the next chunk is being read ahead now
                (target,), = await my_run(my, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                                              "AND ID <> CONNECTION_ID()", (my_database,))
                await my_run(my, f"KILL {int(target)}")
    finally:
        await source.close()
    assert lost == 1
    assert seen == list(range(1, 30_001))
