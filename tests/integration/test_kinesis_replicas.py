"""Kinesis shards split across replicas through leases (issue 11, "Leases"): two, then three
`conduitd run` replicas share a six-shard stream (3/3, then 2/2/2); a SIGKILLed replica's shards move
to the others after the lease's time; a replica SIGSTOPped in the middle of a commit loses its shards,
and when it wakes up its late commit is refused (CheckpointConflict) and it reads again. Every record
is in the destination exactly once, row by row (id, shard, sequence number)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import kinesis as kin
from tests.helpers.daemon import messages, start_conduitd, stop_daemon, tail, write_config
from tests.integration.test_kafka_outages import http_body
from tests.integration.test_postgres_source_leases import eventually

SHARDS = 6
PIPELINE = "ev"
Row = tuple[int, str, str]
"""A record as the destination must hold it: (id, shard id, sequence number)."""


@pytest.fixture
def stream(kinesis_endpoint: str) -> Iterator[str]:
    kinesis = kin.client(kinesis_endpoint)
    name = kin.new_stream_name("replicas")
    kin.create_stream(kinesis, name, SHARDS)
    yield name
    kin.delete_stream(kinesis, name)


@dataclass
class Replicas:
    """The `conduitd run` processes of the test, each with its own config (replica id, health port) and log."""

    tmp: Path
    endpoint: str
    stream: str
    dsn: str
    schema: str
    procs: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def log(self, replica: str) -> Path:
        return self.tmp / f"{replica}.log"

    @property
    def logs(self) -> list[Path]:
        return [self.log(r) for r in sorted(self.procs)]

    def start(self, replica: str) -> None:
        port = kin.free_port()
        config = write_config(self.tmp / f"{replica}.yaml", {
            "service": {"log_format": "json", "health_port": port, "replica_id": replica},
            "sources": [{"name": "kin", "type": "kinesis", "stream": self.stream, "region": "us-east-1",
                         "endpoint_url": self.endpoint, "aws_access_key_id": "AKIDLOCAL",
                         "aws_secret_access_key": "no-real-key",
                         "metadata_columns": ["shard_id", "sequence_number"], "lease_ttl": "3s",
                         "poll_interval": "0.2s", "shard_discovery_interval": "1s"}],
            "destinations": [{"name": "pg", "type": "postgres", "dsn": self.dsn, "schema": self.schema}],
            "resources": [{"name": PIPELINE, "source": "kin", "destination": "pg", "table": "events",
                           "mode": "append", "batch": {"max_rows": 500, "max_wait": "0.2s"}}],
        })
        self.ports[replica] = port
        self.procs[replica] = start_conduitd("run", "-c", str(config), log=self.log(replica))

    def signal(self, replica: str, sig: signal.Signals) -> None:
        os.kill(self.procs[replica].pid, sig)

    async def get(self, replica: str, path: str) -> bytes:
        return await asyncio.to_thread(http_body, f"http://127.0.0.1:{self.ports[replica]}{path}")

    async def status_leases(self, replica: str) -> dict[str, str]:
        """/status of one replica: the shards it says it reads, with the owner it names."""
        try:
            [pipeline] = json.loads(await self.get(replica, "/status"))["pipelines"]
        except OSError:
            return {}  # not listening yet
        return {partition: held["owner"] for partition, held in pipeline["leases"].items()}

    async def conflicts(self, replica: str) -> float:
        """conduitd_checkpoint_conflicts_total of the pipeline, from the replica's /metrics."""
        try:
            text = (await self.get(replica, "/metrics")).decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("conduitd_checkpoint_conflicts_total{") and f'pipeline="{PIPELINE}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            stop_daemon(proc)


async def lease_owners(db: asyncpg.Connection, schema: str) -> dict[str, str]:
    """Live shard leases of the pipeline in the destination's lease table: partition -> owner."""
    if await db.fetchval("SELECT to_regclass($1)", f'"{schema}".conduitd_leases') is None:
        return {}
    rows = await db.fetch(f'SELECT "partition", owner FROM "{schema}".conduitd_leases WHERE kind = \'lease\' '
                          "AND pipeline = $1 AND expires_at >= extract(epoch FROM clock_timestamp())", PIPELINE)
    return {r["partition"]: r["owner"] for r in rows}


async def destination_rows(db: asyncpg.Connection, schema: str) -> Counter[Row]:
    if await db.fetchval("SELECT to_regclass($1)", f'"{schema}".events') is None:
        return Counter()
    rows = await db.fetch(f'SELECT id, kinesis_shard_id, kinesis_sequence_number FROM "{schema}".events')
    return Counter((int(r[0]), str(r[1]), str(r[2])) for r in rows)


def hash_key(partition_key: str) -> int:
    """The 128-bit hash key Kinesis routes a partition key by (MD5)."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


@pytest.mark.slow
async def test_two_then_three_replicas_share_six_shards_a_killed_and_a_stopped_ones_move_exactly_once(
        kinesis_endpoint: str, stream: str, pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    kinesis = kin.client(kinesis_endpoint)
    ranges = {f"{stream}:{s['ShardId']}": (int(s["HashKeyRange"]["StartingHashKey"]),
                                           int(s["HashKeyRange"]["EndingHashKey"]))
              for s in kin.shards(kinesis, stream)}
    expected: list[Row] = []
    next_id = 0

    def put(count: int, into: set[str] | None = None) -> list[Row]:
        """Put `count` JSON records (all of them into the partitions `into`, when given)."""
        nonlocal next_id
        records: list[dict[str, Any]] = []
        while len(records) < count:
            next_id += 1
            key = str(next_id)
            if into is None or any(lo <= hash_key(key) <= hi for p, (lo, hi) in ranges.items() if p in into):
                records.append({"id": next_id})
        placed = kin.put_json(kinesis, stream, records, partition_key=lambda r: str(r["id"]))
        rows = [(r["id"], shard, sequence) for r, (shard, sequence) in zip(records, placed, strict=True)]
        expected.extend(rows)
        return rows

    db = await asyncpg.connect(pg_dsn)
    replicas = Replicas(tmp_path, kinesis_endpoint, stream, pg_dsn, pg_schema)
    try:
        async def arrived_once() -> bool:
            return await destination_rows(db, pg_schema) == Counter(expected)

        async def split(*names: str) -> bool:
            """Every shard leased, to exactly these replicas, evenly; and each replica's /status agrees."""
            held = await lease_owners(db, pg_schema)
            owners = list(held.values())
            if len(held) != SHARDS or set(owners) != set(names) or \
                    any(owners.count(n) != SHARDS // len(names) for n in names):
                return False
            for name in names:
                if await replicas.status_leases(name) != {p: o for p, o in held.items() if o == name}:
                    return False
            return True

        async def wait(check: Callable[[], Awaitable[bool]], what: str, within: float = 120.0) -> None:
            await eventually(check, what, logs=replicas.logs, within=within)

        put(600)
        replicas.start("a")
        replicas.start("b")
        await wait(lambda: split("a", "b"), "two replicas hold three shards each")
        await wait(arrived_once, "the first records once")
        put(600)
        await wait(arrived_once, "the records put under two replicas once")

        replicas.start("c")
        await wait(lambda: split("a", "b", "c"), "three replicas hold two shards each")
        put(600)
        await wait(arrived_once, "the records put under three replicas once")

        # SIGKILL c: its shards move to a and b once its leases and heartbeat expire.
        replicas.signal("c", signal.SIGKILL)
        replicas.procs["c"].wait(30)
        put(600)
        await wait(lambda: split("a", "b"), "c's shards move to a and b")
        await wait(arrived_once, "the records put after c was killed once")

        # Stop a in the middle of a commit: the test holds a lock on the destination table, puts
        # records into a's shards only, and waits until a's commit waits for the lock (rows before
        # the checkpoint: the compare-and-set has not run). a is stopped, the lock released: a's
        # transaction stays open past its leases, b takes a's shards and commits the same records.
        a_shards = {p for p, owner in (await lease_owners(db, pg_schema)).items() if owner == "a"}
        lock = await asyncpg.connect(pg_dsn)
        try:
            locked = lock.transaction()
            await locked.start()
            await lock.execute(f'LOCK TABLE "{pg_schema}".events IN SHARE MODE')
            stalled = put(300, into=a_shards)
            assert {f"{stream}:{shard}" for _, shard, _ in stalled} <= a_shards

            async def a_commit_waits() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM pg_locks WHERE relation = $1::regclass "
                                              "AND NOT granted", f'"{pg_schema}".events'))

            await wait(a_commit_waits, "a's commit waits for the table lock")
            replicas.signal("a", signal.SIGSTOP)
            await locked.commit()
        finally:
            await lock.close()
        await wait(lambda: split("b"), "a's shards move to b while a is stopped")
        await wait(arrived_once, "b commits the records a read, once")

        replicas.signal("a", signal.SIGCONT)

        async def a_refused() -> bool:
            return await replicas.conflicts("a") >= 1 and \
                any("another writer advanced it" in m for m in messages(replicas.log("a")))

        await wait(a_refused, "a's late commit is refused (log line and conflicts metric)")
        refused = [m for m in messages(replicas.log("a")) if "another writer advanced it" in m]
        assert any(f"partition {p!r}" in m for m in refused for p in a_shards), refused
        await wait(lambda: split("a", "b"), "a reads again: a and b hold three shards each")
        put(600)
        await wait(arrived_once, "the records put after a woke up once")
        assert await split("a", "b")

        for replica in ("a", "b"):
            replicas.signal(replica, signal.SIGTERM)
        for replica in ("a", "b"):
            assert replicas.procs[replica].wait(timeout=60) == 0, tail(replicas.log(replica))
        rows = await destination_rows(db, pg_schema)
        assert rows == Counter(expected) and set(rows.values()) == {1}
        assert len(expected) == 4 * 600 + 300 + 600
    finally:
        replicas.close()
        await db.close()
