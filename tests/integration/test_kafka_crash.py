"""Crash safety of the Kafka path: SIGKILL the real daemon at random moments while it loads a
6-partition topic, restart it each time, and check that every record arrived exactly once and that
the stored positions end at the number of records of each partition.

The daemon runs as an operator runs it (`python -m conduitd run -c FILE`, daemon mode, append, so a
duplicate shows as count > count distinct); the test talks to PostgreSQL only to observe progress
and to check the outcome, and to Kafka only to produce (with aiokafka, not the daemon's client).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import messages, start_conduitd, tail, write_config
from tests.helpers.kafka import create_topic, json_record, kafka_source, new_topic_name, produce
from tests.helpers.kafka_checks import checkpoints, count_rows, record_checkpoint_moves

SEED = 20260511
N = 500_000
PARTITIONS = 6
KILLS = 6
PIPELINE = "events"
MAX_KILL_DELAY = 0.3
"""Seconds after this incarnation's first commit that a kill may wait: the daemon commits 100k+
rows/s here once it has its partitions, so a longer window would finish the load before the last
kill (each incarnation loads some 10-60k rows, and the last one still has work to drain)."""


def event(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"user-{i}", "amount": round(i * 0.37, 2), "ok": i % 3 == 0,
            "tags": {"k": i % 7}}


def config(tmp_path: Path, bootstrap: str, topic: str, dsn: str, schema: str) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "drain_timeout": "60s"},
        "sources": [kafka_source(bootstrap, topic, f"g-{topic}")],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": PIPELINE, "source": "k", "destination": "pg", "table": "events", "mode": "append",
                       "batch": {"max_rows": 10_000, "max_wait": "0.5s"}}],
    })












async def wait_until(what: str, condition: Callable[[], Awaitable[bool]], within: float,
                     proc: subprocess.Popen[bytes], log: Path, interval: float = 0.05) -> None:
    """Poll `condition` until true; fail with the log's tail if the daemon died or time ran out."""
    deadline = time.monotonic() + within
    while not await condition():
        if proc.poll() is not None:
            pytest.fail(f"the daemon exited with {proc.returncode} while waiting for {what}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}:\n{tail(log)}")
        await asyncio.sleep(interval)


async def settle(pg: Any, schema: str) -> int:
    """Wait until the killed daemon's PostgreSQL session is gone (a COMMIT it sent just before the
    SIGKILL may still land), then return the row count."""
    deadline = time.monotonic() + 30
    while await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                            f"conduitd {schema}"[:63]):
        assert time.monotonic() < deadline, "the killed daemon's PostgreSQL session did not end"
        await asyncio.sleep(0.05)
    return await count_rows(pg, schema)


def reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    rng = random.Random(SEED)
    topic = new_topic_name("crash")
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    partition_of = [rng.randrange(PARTITIONS) for _ in range(N)]  # uneven counts: a mixed-up checkpoint shows
    await produce(kafka_bootstrap, topic, (json_record(event(i), key=i, partition=partition_of[i]) for i in range(N)))
    produced = Counter(partition_of)
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)

    started = time.monotonic()
    kills: list[tuple[int, int, int, float]] = []  # rows before the kill, after it, by this incarnation; delay
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        before = 0
        for n in range(KILLS):
            log = tmp_path / f"daemon-{n}.log"
            proc = start_conduitd("run", "-c", str(path), log=log)
            procs.append(proc)
            logs.append(log)

            async def progressed(before: int = before) -> bool:
                rows = await count_rows(pg, pg_schema)
                return rows > before or rows >= N

            # A restart re-joins the group: the killed member holds its partitions until its session
            # (6 s) times out, so the first commit of an incarnation takes several seconds.
            await wait_until(f"a commit by incarnation {n}", progressed, 90, proc, log)
            if n == 0:
                await record_checkpoint_moves(pg, pg_schema)  # the table exists now
            delay = rng.uniform(0, MAX_KILL_DELAY)
            await asyncio.sleep(delay)
            assert proc.poll() is None, f"incarnation {n} exited by itself ({proc.returncode}):\n{tail(log)}"
            rows = await count_rows(pg, pg_schema)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            settled = await settle(pg, pg_schema)
            kills.append((rows, settled, settled - before, delay))
            before = settled

        # The last incarnation finishes the load and is stopped with SIGTERM.
        log = tmp_path / "daemon-final.log"
        proc = start_conduitd("run", "-c", str(path), log=log)
        procs.append(proc)
        logs.append(log)
        stable_since: list[float] = []

        async def complete_and_stable() -> bool:
            if await count_rows(pg, pg_schema) < N:
                stable_since.clear()
                return False
            stable_since[:] = stable_since or [time.monotonic()]
            return time.monotonic() - stable_since[0] > 2.0  # nothing more arrives

        await wait_until(f"{N} rows", complete_and_stable, 150, proc, log, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, tail(log)
    finally:
        for proc in procs:
            reap(proc)
    elapsed = time.monotonic() - started

    mid_load = [k for k in kills if 0 < k[1] < N]
    assert len(mid_load) >= KILLS // 2, f"too few kills landed while the load was under way: {kills}"
    assert all(k[2] > 0 for k in mid_load), f"an incarnation was killed before it committed anything: {kills}"
    final = [m for m in messages(log) if m.startswith("pipeline events stopped")]
    print(f"\nkills (rows before the kill, after it, by that incarnation; delay): {kills}\n"
          f"final incarnation: {final}; {elapsed:.1f}s")

    stats = await pg.fetchrow(f'SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi '
                              f'FROM "{pg_schema}".events')
    assert (stats["n"], stats["d"], stats["lo"], stats["hi"]) == (N, N, 0, N - 1)
    ids = {r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".events')}
    assert ids == set(range(N))
    # Each row is the record produced with its id (nothing half-written or mixed up).
    sample = rng.sample(range(N), 500)
    rows = await pg.fetch(f'SELECT id, name, amount, ok FROM "{pg_schema}".events WHERE id = ANY($1::bigint[])', sample)
    assert {r["id"]: (r["name"], r["amount"], r["ok"]) for r in rows} == {
        i: (event(i)["name"], event(i)["amount"], event(i)["ok"]) for i in sample}
    assert await checkpoints(pg, pg_schema) == {f"{topic}:{p}": produced[p] for p in range(PARTITIONS)}
    moves = await pg.fetch(f'SELECT partition, old_offset, new_offset FROM "{pg_schema}".checkpoint_moves')
    assert len(moves) > 20 and all(m["new_offset"] > m["old_offset"] for m in moves), "a checkpoint moved backwards"
    assert await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".events_dlq') == 0
    # No incarnation hit a checkpoint conflict or an error (a single owner at a time never should).
    for log in logs:
        problems = [m for m in messages(log) if "no longer" in m or "Traceback" in m or "error:" in m]
        assert not problems, f"{log.name}: {problems[:5]}"
