"""DLQs outside the destination: a JSONL file or a Kafka topic.

They cannot join the destination's transaction, so a batch's rejects are written (and flushed:
fsync, or the producer's delivery reports) just before it commits. A crash or a failed commit
after that point replays the batch and writes its rejects again: at least once. Every entry
carries an `id`, a digest of pipeline, partition, position, rule and payload, equal for a repeat
of the same reject; `conduitd dlq list` shows each id once.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from conduitd.config import DlqConfig
from conduitd.core.records import Reject
from conduitd.errors import ConduitError, ConfigError, TransientError
from conduitd.ops.durable import append_whole
from conduitd.oserrors import os_error_text
from conduitd.registry import Connector

log = logging.getLogger(__name__)
_REQUIRED = ("id", "pipeline", "rule", "reason")


class DlqSink(Protocol):
    async def write(self, pipeline: str, rejects: Sequence[Reject]) -> None:
        """Store the rejects durably before returning; raise TransientError to retry the batch."""

    async def close(self) -> None: ...


def entry(pipeline: str, reject: Reject) -> dict[str, Any]:
    """A DLQ entry as written to a file or a topic."""
    identity = orjson.dumps([pipeline, reject.partition, reject.position, reject.rule, reject.payload],
                            option=orjson.OPT_SORT_KEYS)
    return {
        "id": hashlib.sha256(identity).hexdigest()[:24], "pipeline": pipeline, "partition": reject.partition,
        "position": reject.position, "rule": reject.rule, "reason": reject.reason, "column": reject.column,
        "value": reject.value, "payload": reject.payload, "created_at": datetime.now(UTC).isoformat(),
    }


class FileDlq:
    """Appends JSON lines and fsyncs them."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def write(self, pipeline: str, rejects: Sequence[Reject]) -> None:
        data = b"".join(orjson.dumps(entry(pipeline, r), default=str) + b"\n" for r in rejects)
        await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        try:
            append_whole(self.path, data)
        except OSError as exc:
            raise file_error(self.path, exc) from None

    async def close(self) -> None:
        return None


class KafkaDlq:
    """Produces each entry (key: its id) and waits for every delivery report."""

    def __init__(self, config: DlqConfig) -> None:
        from confluent_kafka import Producer

        from conduitd.sources.kafka.clients import create_client

        assert config.brokers and config.topic
        self.topic = config.topic
        settings = {**config.client, "bootstrap.servers": config.brokers, "enable.idempotence": False}
        self.producer = create_client(Producer, settings, config.client, f"the Kafka DLQ (topic {config.topic})")

    async def write(self, pipeline: str, rejects: Sequence[Reject]) -> None:
        await asyncio.to_thread(self._produce, pipeline, rejects)

    def _produce(self, pipeline: str, rejects: Sequence[Reject]) -> None:
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for reject in rejects:
            body = entry(pipeline, reject)
            self.producer.produce(self.topic, orjson.dumps(body, default=str), key=body["id"], on_delivery=delivered)
            self.producer.poll(0)
        remaining = self.producer.flush(30)
        if remaining or failures:
            raise TransientError(f"DLQ topic {self.topic}: {remaining} undelivered, errors: {failures[:3]}")

    async def close(self) -> None:
        await asyncio.to_thread(self.producer.flush, 10)


def file_error(path: Path, exc: OSError) -> ConduitError:
    """What a failed write of a DLQ file is: a full disk may be freed, so the batch is retried
    (readiness red meanwhile); a path that cannot be written (a directory, a read-only mount)
    stays so, and stops the pipeline with the config exit code. Either way the batch is not
    committed, so nothing is lost."""
    text = f"cannot write the DLQ file {str(path)!r}: {os_error_text(exc)}; the batch is not committed"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR):
        return TransientError(text)
    return ConfigError(text)


def open_sink(config: DlqConfig) -> DlqSink | None:
    """The external sink for `config` (looked up in `conduitd.registry` by its `type`), or None
    for a DLQ table (written in the transaction)."""
    from conduitd.registry import build

    sink: DlqSink | None = build("dlq", config)
    return sink


def _table(config: DlqConfig) -> None:
    return None


def _file(config: DlqConfig) -> DlqSink:
    assert config.path
    return FileDlq(config.path)


TABLE = Connector(type="table", kind="dlq", config_model=DlqConfig, factory=_table, capabilities=("exactly_once",),
                  description="a table in the destination, written in the batch's transaction")
FILE = Connector(type="file", kind="dlq", config_model=DlqConfig, factory=_file, capabilities=("at_least_once",),
                 description="a JSONL file, fsynced before the batch commits")
KAFKA = Connector(type="kafka", kind="dlq", config_model=DlqConfig, factory=KafkaDlq, capabilities=("at_least_once",),
                  requires=("confluent_kafka",), extra="kafka",
                  description="a Kafka topic, every delivery confirmed before the batch commits")


def read_file(path: str) -> list[dict[str, Any]]:
    """A file DLQ's entries, each id once (the first time it was written)."""
    seen: set[str] = set()
    entries = []
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the DLQ file {path!r}: {os_error_text(exc)}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            item = None
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in _REQUIRED):
            # Not an entry conduitd wrote whole (edited by hand, or cut by a crash): shown as
            # skipped, so that one bad line does not hide the others.
            log.warning("%s line %d is not a DLQ entry: skipped", path, number)
            continue
        if item["id"] not in seen:
            seen.add(item["id"])
            entries.append(item)
    return entries
