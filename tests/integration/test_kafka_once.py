"""`conduitd run --once` on Kafka needs no group membership (issue 8, item 20): it assigns itself
every partition, reads each from the destination's checkpoint up to the high watermark it had at
start, and is fenced by the checkpoint compare-and-set like any writer. So it cannot hang on a
group whose rebalance never completes (a broker keeping a SIGKILLed member as the group's leader),
and a daemon of the same group writing the same partitions at the same time duplicates nothing.

The daemons and runs are the real command; the test produces with aiokafka, looks at the group
with aiokafka's admin client and at the outcome in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from tests.helpers.daemon import conduitd, messages, start_conduitd, tail, write_config
from tests.helpers.kafka import (
    Record,
    create_topic,
    group_members,
    json_record,
    kafka_source,
    new_topic_name,
    produce,
)
from tests.helpers.kafka_checks import checkpoints, count_rows, record_checkpoint_moves

CONFLICT = "another writer advanced it"


def config(tmp_path: Path, bootstrap: str, topic: str, dsn: str, schema: str) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "drain_timeout": "60s", "once_retry_timeout": "20s"},
        "sources": [kafka_source(bootstrap, topic, f"g-{topic}")],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "events", "source": "k", "destination": "pg", "table": "events", "mode": "append",
                       "batch": {"max_rows": 5000, "max_wait": "0.2s"}}],
    })


def records(ids: Iterable[int], partitions: int, poison_every: int = 0) -> list[Record]:
    """Record i to partition i % partitions; every `poison_every`-th one is not JSON (DLQ)."""
    out = []
    for i in ids:
        if poison_every and i % poison_every == 0:
            out.append(Record(f"not json {i}".encode(), str(i).encode(), i % partitions))
        else:
            out.append(json_record({"id": i, "name": f"user-{i}"}, key=i, partition=i % partitions))
    return out


async def wait_until(what: str, condition: Callable[[], Awaitable[bool]], within: float,
                     procs: Iterable[tuple[subprocess.Popen[bytes], Path]] = ()) -> None:
    """Poll `condition`; fail with the logs' tails when a process exited or time ran out."""
    deadline = time.monotonic() + within
    while not await condition():
        exited = [(p, log) for p, log in procs if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"exited with {exited[0][0].returncode}" if exited else f"timed out after {within:.0f}s"
            raise AssertionError(f"{why} waiting for {what}:\n" + "\n".join(tail(log) for _, log in procs))
        await asyncio.sleep(0.1)






async def sessions_waiting_on_a_lock(pg: Any, schema: str) -> int:
    await pg.execute("SELECT pg_stat_clear_snapshot()")  # else it is read once per transaction
    return int(await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        f"conduitd {schema}"[:63]))


async def assert_each_record_once(pg: Any, schema: str, ids: set[int], poison_every: int = 0) -> None:
    """Every id exactly once: good records in the table, poison records in the DLQ."""
    rows = [r["id"] for r in await pg.fetch(f'SELECT id FROM "{schema}".events')]
    assert len(rows) == len(set(rows)), "a record was written twice"
    dead = []
    if poison_every:
        payloads = [bytes(r["payload"]) if not isinstance(r["payload"], str) else r["payload"].encode()
                    for r in await pg.fetch(f'SELECT payload FROM "{schema}".events_dlq')]
        dead = [int(p.decode().removeprefix("not json ")) for p in payloads]
        assert len(dead) == len(set(dead)), "a record was dead-lettered twice"
    assert not set(rows) & set(dead), "a record is in the table and in the DLQ"
    assert set(rows) | set(dead) == ids
    assert all(i % poison_every == 0 for i in dead) if poison_every else not dead


async def test_once_reads_every_partition_without_joining_the_group(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """While a --once run is in the middle of its work (its commit held by a lock the test takes),
    the broker lists no member in its group: it reads by direct assignment. Every record arrives
    once, row by row, and a second run writes nothing."""
    topic, group = new_topic_name("once"), None
    group = f"g-{topic}"
    await create_topic(kafka_bootstrap, topic, 3)
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    await produce(kafka_bootstrap, topic, records(range(300), 3, poison_every=37))
    first = conduitd("--once", "-c", str(path), timeout=120)  # creates the tables
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr

    log = tmp_path / "once.log"
    async with pg.transaction():
        await pg.execute(f'LOCK TABLE "{pg_schema}".conduitd_checkpoints IN EXCLUSIVE MODE')
        await produce(kafka_bootstrap, topic, records(range(300, 3000), 3, poison_every=37))
        proc = start_conduitd("--once", "-c", str(path), log=log)
        try:
            async def committing() -> bool:
                return await sessions_waiting_on_a_lock(pg, pg_schema) == 1

            await wait_until("the run to read and wait to commit", committing, 60, [(proc, log)])
            assert await group_members(kafka_bootstrap, group) == [], "the --once run joined the group"
        except BaseException:
            proc.kill()
            proc.wait(30)
            raise
    assert await asyncio.to_thread(proc.wait, 120) == 0, tail(log)
    assert not [m for m in messages(log) if "Traceback" in m]
    await assert_each_record_once(pg, pg_schema, set(range(3000)), poison_every=37)
    assert await checkpoints(pg, pg_schema) == {f"{topic}:{p}": 1000 for p in range(3)}

    again = conduitd("--once", "-c", str(path), timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    await assert_each_record_once(pg, pg_schema, set(range(3000)), poison_every=37)
    assert await checkpoints(pg, pg_schema) == {f"{topic}:{p}": 1000 for p in range(3)}


async def test_once_completes_after_the_members_of_its_group_were_killed(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """Two daemons of the group load part of a topic and are SIGKILLed (the broker may keep one as
    the group's leader, and a member joining then waits for an assignment that never comes); more
    records arrive; a --once run in that group completes and every record is there once."""
    topic = new_topic_name("killed")
    await create_topic(kafka_bootstrap, topic, 4)
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    await produce(kafka_bootstrap, topic, records(range(20_000), 4))
    daemons = [(start_conduitd("run", "-c", str(path), log=tmp_path / f"d{n}.log"), tmp_path / f"d{n}.log")
               for n in range(2)]
    try:
        async def both_assigned_and_committing() -> bool:
            assigned = all(any(m.startswith("assigned ") and not m.startswith("assigned 0 ") for m in messages(log))
                           for _, log in daemons)
            return assigned and await count_rows(pg, pg_schema) > 0

        await wait_until("both daemons to own partitions and commit", both_assigned_and_committing, 90, daemons)
        for proc, _ in daemons:
            proc.send_signal(signal.SIGKILL)
    finally:
        for proc, _ in daemons:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
    await produce(kafka_bootstrap, topic, records(range(20_000, 30_000), 4))
    result = await asyncio.to_thread(conduitd, "--once", "-c", str(path), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    await assert_each_record_once(pg, pg_schema, set(range(30_000)))
    assert await checkpoints(pg, pg_schema) == {f"{topic}:{p}": 7500 for p in range(4)}


async def test_once_beside_a_daemon_of_the_same_group_writes_nothing_twice(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """A daemon owns both partitions and is caught up. New records arrive; the daemon's commit of
    them and a --once run's commit of the same records both wait on the checkpoint rows (held by
    the test). Released, one wins the compare-and-set and the other's batch is rolled back (refused,
    or chosen as a deadlock victim and then found committed): after both stop every record is there
    once and no checkpoint ever moved backwards."""
    topic = new_topic_name("beside")
    await create_topic(kafka_bootstrap, topic, 2)
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    p0, p1 = f"{topic}:0", f"{topic}:1"
    await produce(kafka_bootstrap, topic, records(range(2000), 2))
    daemon_log, once_log = tmp_path / "daemon.log", tmp_path / "once.log"
    daemon = start_conduitd("run", "-c", str(path), log=daemon_log)
    once: subprocess.Popen[bytes] | None = None
    try:
        async def daemon_caught_up() -> bool:
            return await checkpoints(pg, pg_schema) == {p0: 1000, p1: 1000}

        await wait_until("the daemon to load the first 2000 records", daemon_caught_up, 90, [(daemon, daemon_log)])
        await record_checkpoint_moves(pg, pg_schema)
        async with pg.transaction():
            await pg.execute(f'SELECT 1 FROM "{pg_schema}".conduitd_checkpoints WHERE pipeline = $1 FOR UPDATE',
                             "events")
            await produce(kafka_bootstrap, topic, records(range(2000, 4000), 2))

            async def waiting(n: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return await sessions_waiting_on_a_lock(pg, pg_schema) == n
                return check

            await wait_until("the daemon's commit to wait", await waiting(1), 60, [(daemon, daemon_log)])
            once = start_conduitd("--once", "-c", str(path), log=once_log)
            await wait_until("the --once run's commit to wait too", await waiting(2), 60,
                             [(daemon, daemon_log), (once, once_log)])
        assert await asyncio.to_thread(once.wait, 120) == 0, tail(once_log)

        async def complete() -> bool:
            return await checkpoints(pg, pg_schema) == {p0: 2000, p1: 2000}

        await wait_until("the daemon to be caught up", complete, 60, [(daemon, daemon_log)])
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait, 60) == 0, tail(daemon_log)
    finally:
        for proc in (daemon, once):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
    await assert_each_record_once(pg, pg_schema, set(range(4000)))
    moves = await pg.fetch(f'SELECT partition, old_offset, new_offset FROM "{pg_schema}".checkpoint_moves '
                           "WHERE new_offset <= old_offset")
    assert not moves, [dict(m) for m in moves]
    assert not [m for log in (daemon_log, once_log) for m in messages(log) if "Traceback" in m]


async def test_once_whose_last_commit_is_refused_reads_on_from_the_new_checkpoint(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """A --once run has read everything and waits to commit offsets 1000-1999; meanwhile another
    owner (played by the test, as a daemon of the group would) commits offsets 1000-1249. The run's
    commit is refused by the compare-and-set; it must not end there (1250-1999 would be left to
    nobody) but re-seek to 1250, read the rest and commit it."""
    topic = new_topic_name("refused")
    await create_topic(kafka_bootstrap, topic, 1)
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    await produce(kafka_bootstrap, topic, records(range(1000), 1))
    first = conduitd("--once", "-c", str(path), timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    await produce(kafka_bootstrap, topic, records(range(1000, 2000), 1))
    log = tmp_path / "once.log"
    partition = f"{topic}:0"
    async with pg.transaction():
        await pg.execute(f'SELECT 1 FROM "{pg_schema}".conduitd_checkpoints WHERE partition = $1 FOR UPDATE',
                         partition)
        proc = start_conduitd("--once", "-c", str(path), log=log)
        try:
            async def committing() -> bool:
                return await sessions_waiting_on_a_lock(pg, pg_schema) == 1

            await wait_until("the run to read everything and wait to commit", committing, 60, [(proc, log)])
            # The other owner's batch: its rows and the checkpoint moved past them, in one transaction.
            await pg.executemany(f'INSERT INTO "{pg_schema}".events (id, name) VALUES ($1, $2)',
                                 [(i, f"user-{i}") for i in range(1000, 1250)])
            await pg.execute(f"UPDATE \"{pg_schema}\".conduitd_checkpoints SET position = '{{\"offset\": 1250}}' "
                             "WHERE partition = $1", partition)
        except BaseException:
            proc.kill()
            proc.wait(30)
            raise
    assert await asyncio.to_thread(proc.wait, 120) == 0, tail(log)
    assert [m for m in messages(log) if CONFLICT in m], tail(log)
    await assert_each_record_once(pg, pg_schema, set(range(2000)))
    assert await checkpoints(pg, pg_schema) == {partition: 2000}
