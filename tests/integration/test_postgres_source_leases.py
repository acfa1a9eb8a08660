"""Replicas of database-table pipelines split the tables through leases in the destination
(issue 10, item 5): a stalled owner's late commit is refused inside its own transaction; two, then
three replicas over six tables share them; a SIGSTOPped replica's tables move and nothing is lost
or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig, PostgresDestinationConfig
from conduitd.core.records import Chunk
from conduitd.destinations.base import Destination
from conduitd.destinations.postgres import PostgresDestination
from conduitd.errors import CheckpointConflict
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import Committer
from conduitd.runtime.leases import PipelineLeases
from tests.helpers.daemon import start_conduitd, stop_daemon, tail, write_config
from tests.helpers.own_database import own_database

TABLES = [f"t{i}" for i in range(6)]


@pytest.fixture(scope="module")
def source_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of this module's own (the late-commit bound looks at its write transactions)."""
    yield from own_database(pg_dsn, "conduitd_leases")


@pytest.fixture
async def db(source_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(source_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def schema(db: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"s_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE SCHEMA "{name}"')
    yield name
    await db.execute(f'DROP SCHEMA "{name}" CASCADE')


async def eventually(check: Callable[[], Awaitable[bool]], what: str, logs: list[Path], within: float = 90.0) -> None:
    """Wait until `check` holds (a guard against a hang, not a measure: conditions, not sleeps)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"not reached in {within:.0f}s: {what}\n" + "\n".join(tail(log) for log in logs))


def as_leases(destination: Destination, owner: str) -> PipelineLeases:
    async def run(action: Callable[[Destination], Awaitable[Any]]) -> Any:
        return await action(destination)
    return PipelineLeases(run, "orders", "db", owner)


async def test_a_stalled_owners_late_commit_is_refused_in_its_own_transaction(
        db: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    destination = PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "wh", "type": "postgres", "dsn": source_dsn, "schema": schema}))
    await destination.open()
    try:
        pipeline = PipelineConfig(name="orders", source="db", destination="wh", table="orders")
        await destination.setup(pipeline)
        a, b = as_leases(destination, "replica-a"), as_leases(destination, "replica-b")
        won = await a.claim("public.orders", ttl=0.5)
        assert won is not None
        a_epoch, a_start = won
        assert a_start == {"lease": {"owner": "replica-a", "epoch": a_epoch}}
        assert await b.claim("public.orders", ttl=0.5) is None  # held
        committer = Committer(destination, pipeline)
        first = build_batch([Chunk("public.orders", a_start, {"cursor": "1", "key": ["1"], "lease": a_start["lease"]},
                                   pa.table({"id": [1]}))])
        await committer.commit(await committer.prepare(first))
        # A stalls past its lease; B takes the table and stamps the committed position.
        late = build_batch([Chunk("public.orders", first.end["public.orders"],
                                  {"cursor": "2", "key": ["2"], "lease": a_start["lease"]}, pa.table({"id": [2]}))])
        prepared = await committer.prepare(late)
        await asyncio.sleep(0.6)
        won_b = await b.claim("public.orders", ttl=30)
        assert won_b is not None and won_b[0] == a_epoch + 1
        assert won_b[1] == {"cursor": "1", "key": ["1"], "lease": {"owner": "replica-b", "epoch": a_epoch + 1}}
        assert not await a.renew("public.orders", a_epoch, ttl=30)
        with pytest.raises(CheckpointConflict):
            await committer.commit(prepared)  # A wakes up: its commit is refused, nothing written
        assert [r["id"] for r in await db.fetch(f'SELECT id FROM "{schema}".orders ORDER BY id')] == [1]
        census = await b.census("public.orders", ttl=30)
        assert census.mine == ("orders/public.orders",) and census.partitions == 1
    finally:
        await destination.close()


def daemon_config(path: Path, dsn: str, schema: str, ttl: str = "3s") -> Path:
    return write_config(path, {
        "service": {"log_format": "json"},
        "sources": [{"name": "db", "type": "postgres", "dsn": dsn, "schema": schema, "poll_interval": "0.2s",
                     "lease_ttl": ttl}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": f"copy_{t}", "source": "db", "destination": "wh", "source_table": t,
                       "table": f"dst_{t}", "incremental": {"column": "id"}, "batch": {"max_rows": 500,
                                                                                     "max_wait": "0.2s"}}
                      for t in TABLES],
    })


async def insert(db: asyncpg.Connection, schema: str, rows: int) -> None:
    for t in TABLES:
        await db.execute(f'INSERT INTO "{schema}".{t} (v) SELECT md5(g::text) FROM generate_series(1, $1) g', rows)


async def owners(db: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await db.fetch(f"SELECT pipeline, owner FROM \"{schema}\".conduitd_leases WHERE kind = 'lease' "
                          "AND expires_at >= extract(epoch FROM clock_timestamp())")
    return {r["pipeline"]: r["owner"] for r in rows}


async def copied_exactly(db: asyncpg.Connection, schema: str) -> bool:
    for t in TABLES:
        exists = await db.fetchval("SELECT to_regclass($1)", f'"{schema}".dst_{t}')
        if exists is None:
            return False
        same = await db.fetchval(
            f'SELECT (SELECT count(*) FROM "{schema}".dst_{t}) = (SELECT count(*) FROM "{schema}".{t}) AND '
            f'(SELECT count(DISTINCT id) FROM "{schema}".dst_{t}) = (SELECT count(*) FROM "{schema}".{t})')
        if not same:
            return False
    return True


@pytest.mark.slow
async def test_replicas_split_six_tables_and_a_stopped_ones_tables_move_without_loss_or_duplicates(
        db: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    for t in TABLES:
        await db.execute(f'CREATE TABLE "{schema}".{t} (id bigserial PRIMARY KEY, v text)')
    await insert(db, schema, 300)
    config = daemon_config(tmp_path / "conduitd.yaml", source_dsn, schema)
    logs = [tmp_path / f"{r}.log" for r in "abc"]
    procs: dict[str, Any] = {}

    def start(replica: str) -> None:
        procs[replica] = start_conduitd("run", "-c", str(config), log=tmp_path / f"{replica}.log",
                                        env={"CONDUITD_REPLICA_ID": f"replica-{replica}"})

    try:
        start("a")
        await eventually(lambda: copied_exactly(db, schema), "replica a copies all six tables", logs=logs)
        start("b")

        async def split(n: int) -> bool:
            held = list((await owners(db, schema)).values())
            return len(held) == 6 and len(set(held)) == n and max(held.count(o) for o in set(held)) <= -(-6 // n)

        await eventually(lambda: split(2), "two replicas hold three tables each", logs=logs)
        await insert(db, schema, 400)
        await eventually(lambda: copied_exactly(db, schema), "the rows after the split arrive once", logs=logs)
        start("c")
        await eventually(lambda: split(3), "three replicas hold two tables each", logs=logs)
        # Stall replica a past its leases: its tables move to b and c.
        stalled = {p for p, o in (await owners(db, schema)).items() if o == "replica-a"}
        assert stalled
        os.kill(procs["a"].pid, signal.SIGSTOP)
        await insert(db, schema, 500)

        async def moved() -> bool:
            now = await owners(db, schema)
            return len(now) == 6 and "replica-a" not in now.values()

        await eventually(moved, "replica a's tables move to b and c", logs=logs)
        await eventually(lambda: copied_exactly(db, schema), "rows written while a is stopped arrive once", logs=logs)
        os.kill(procs["a"].pid, signal.SIGCONT)  # a wakes up: whatever it had read is refused or dropped
        await insert(db, schema, 200)
        await eventually(lambda: split(3), "the three replicas share the tables again", logs=logs)
        await eventually(lambda: copied_exactly(db, schema), "every row once after a resumed", logs=logs)
        for replica in "abc":
            procs[replica].send_signal(signal.SIGTERM)
        for replica in "abc":
            assert procs[replica].wait(timeout=60) == 0, tail(logs["abc".index(replica)])
        assert await copied_exactly(db, schema)
        total = sum([await db.fetchval(f'SELECT count(*) FROM "{schema}".dst_{t}') for t in TABLES])
        assert total == 6 * (300 + 400 + 500 + 200)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            stop_daemon(proc)


async def test_a_table_added_later_counts_in_the_fair_share_before_its_first_claim(
        db: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    destination = PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "wh", "type": "postgres", "dsn": source_dsn, "schema": schema}))
    await destination.open()
    try:
        a = as_leases(destination, "replica-a")
        assert (await a.census("public.t1", ttl=30)).share == 1
        assert await a.claim("public.t1", ttl=30) is not None
        later = await a.census("public.t2", ttl=30)  # t2 has no lease row yet
        assert (later.replicas, later.partitions, later.mine) == (1, 2, ("orders/public.t1",))
        assert len(later.mine) < later.share  # so this replica may take it
    finally:
        await destination.close()
