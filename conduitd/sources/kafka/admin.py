"""Broker metadata for `conduitd validate` and for tests: which topics exist, how many partitions."""

from __future__ import annotations

import asyncio
import re

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from conduitd.config import KafkaSourceConfig
from conduitd.errors import DependencyUnreachable


async def describe_topics(config: KafkaSourceConfig, wait: float = 10.0) -> str:
    """'reachable; topic orders: 6 partition(s)' or DependencyUnreachable."""
    client = AdminClient({**{k: v for k, v in config.client.items() if not k.startswith(("session.", "heartbeat."))},
                          "bootstrap.servers": config.brokers})
    try:
        metadata = await asyncio.to_thread(client.list_topics, timeout=wait)
    except KafkaException as exc:
        raise DependencyUnreachable(f"Kafka brokers {config.brokers} unreachable: {exc}") from None
    wanted = [t for t in metadata.topics if t in config.topics or
              (config.topic_pattern is not None and re.fullmatch(config.topic_pattern, t))]
    parts = [f"topic {t}: {len(metadata.topics[t].partitions)} partition(s)" for t in sorted(wanted)]
    missing = [t for t in config.topics if t not in metadata.topics]
    parts += [f"topic {t}: does not exist (yet)" for t in missing]
    return "reachable; " + "; ".join(parts) if parts else "reachable; no matching topic yet"
