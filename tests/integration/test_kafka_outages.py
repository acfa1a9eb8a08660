"""Outages on the streaming path: the destination stops (memory stays bounded, readiness goes red,
the load resumes by itself when it is back) and the broker is unreachable at start or hangs mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from tests.helpers.daemon import start_conduitd, write_config
from tests.helpers.kafka import (
    create_topic,
    free_port,
    json_record,
    kafka_source,
    new_topic_name,
    produce,
    start_tansu,
)
from tests.helpers.private_pg import create_private_postgres


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def http_body(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as response:
        return bytes(response.read())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def count(dsn: str, table: str) -> int:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return -1
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", table)
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}")) if exists else 0
    finally:
        await conn.close()


async def wait_until(condition: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def daemon_config(tmp_path: Path, bootstrap: str, topic: str, dsn: str, port: int, schema: str = "public",
                  **client: Any) -> Path:
    source = kafka_source(bootstrap, topic, f"g-{topic}")
    source["client"] = {**source["client"], **client}  # type: ignore[dict-item]
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "health_port": port, "retry_max_wait": "1s"},
        "sources": [source],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema, "connect_timeout": "2s"}],
        "resources": [{"name": "events", "source": "k", "destination": "pg", "table": "events",
                       "batch": {"max_rows": 20000, "max_wait": "0.5s"}}],
    })


async def test_stalled_destination_keeps_memory_bounded_and_recovers(tmp_path: Path, kafka_bootstrap: str) -> None:
    total = 400_000
    pad = "x" * 400
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 3)
    await produce(kafka_bootstrap, topic, (json_record({"id": i, "pad": pad}, partition=i % 3) for i in range(total)))
    server = create_private_postgres()
    port = free_port()
    daemon = start_conduitd("-c", str(daemon_config(tmp_path, kafka_bootstrap, topic, server.dsn, port)),
                            log=tmp_path / "log")
    try:
        await wait_until(lambda: _above(count(server.dsn, "events"), 0), 60, "the first commits")
        server.stop()
        stopped_at = rss_mib(daemon.pid)
        await wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 503, 30, "readiness to go red")
        samples = []
        for _ in range(20):  # ten seconds with the destination down and 400k records waiting
            samples.append(rss_mib(daemon.pid))
            await asyncio.sleep(0.5)
        status = json.loads(await asyncio.to_thread(http_body, f"http://127.0.0.1:{port}/status"))["pipelines"][0]
        waiting = sum(p["records"] for p in status["lag"].values())
        print(f"RSS when the database stopped {stopped_at:.0f} MiB, peak while down {max(samples):.0f} MiB; "
              f"records still waiting in Kafka: {waiting}")
        assert status["state"] == "retrying" and "PostgreSQL" in (status["last_error"] or "")
        assert max(samples) - stopped_at < 200, "memory grew while the destination was down"
        assert waiting > total // 4, "the consumer kept fetching while nothing could be written"
        server.start()
        await wait_until(lambda: _equals(count(server.dsn, "events"), total), 120, "every record after recovery")
        assert http_status(f"http://127.0.0.1:{port}/readyz") == 200
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT count(DISTINCT id) FROM events") == total
        finally:
            await conn.close()
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        server.remove()


async def test_broker_unreachable_at_start_and_hung_mid_run(
        tmp_path: Path, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    broker_port = free_port()
    health = free_port()
    topic = new_topic_name()
    bootstrap = f"127.0.0.1:{broker_port}"
    config = daemon_config(tmp_path, bootstrap, topic, pg_dsn, health, pg_schema, **{"socket.timeout.ms": 3000})
    daemon = start_conduitd("-c", str(config), log=tmp_path / "log")
    broker = None
    try:
        await wait_until(lambda: daemon.poll() is not None or http_status(f"http://127.0.0.1:{health}/readyz") == 503,
                         30, "readiness to be red while no broker answers")
        assert daemon.poll() is None, "the daemon must keep retrying, not exit"
        broker = start_tansu(broker_port)
        await create_topic(bootstrap, topic, 2)
        await produce(bootstrap, topic, (json_record({"id": i}, partition=i % 2) for i in range(50_000)))
        table = f'"{pg_schema}".events'
        await wait_until(lambda: _equals(count(pg_dsn, table), 50_000), 90, "the first 50k records")
        await wait_until(lambda: http_status(f"http://127.0.0.1:{health}/readyz") == 200, 30, "readiness green")

        os.kill(broker.process.pid, signal.SIGSTOP)  # the broker hangs: no answers, no errors
        try:
            await wait_until(lambda: http_status(f"http://127.0.0.1:{health}/readyz") == 503, 60,
                             "readiness to go red while the broker hangs")
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        await produce(bootstrap, topic, (json_record({"id": i}, partition=i % 2) for i in range(50_000, 100_000)))
        await wait_until(lambda: _equals(count(pg_dsn, table), 100_000), 120, "all 100k records")
        await wait_until(lambda: http_status(f"http://127.0.0.1:{health}/readyz") == 200, 30, "readiness green")
        assert await pg.fetchval(f"SELECT count(DISTINCT id) FROM {table}") == 100_000
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        if broker is not None:
            broker.stop()


async def _above(value: Any, floor: int) -> bool:
    return bool(await value > floor)


async def _equals(value: Any, wanted: int) -> bool:
    return bool(await value == wanted)
