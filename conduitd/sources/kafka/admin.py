"""Broker metadata for `conduitd validate` and for tests: which topics exist, how many partitions."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from conduitd.config import KafkaSourceConfig
from conduitd.errors import DependencyUnreachable
from conduitd.sources.kafka.clients import create_client
from conduitd.sources.kafka.topics import matching_topics


async def describe_topics(config: KafkaSourceConfig, wait: float = 10.0) -> str:
    """'reachable; topic orders: 6 partition(s)' or DependencyUnreachable."""
    client = create_client(
        AdminClient, {**{k: v for k, v in config.client.items() if not k.startswith(("session.", "heartbeat."))},
                      "bootstrap.servers": config.brokers}, config.client, f'source "{config.name}"')
    try:
        metadata = await asyncio.to_thread(client.list_topics, timeout=wait)
    except KafkaException as exc:
        raise DependencyUnreachable(f"Kafka brokers {config.brokers} unreachable: {exc}") from None
    wanted = matching_topics(config, metadata.topics)  # what `run` reads: from the start of the name
    parts = [f"topic {t}: {len(metadata.topics[t].partitions)} partition(s)" for t in wanted]
    missing = [t for t in config.topics if t not in metadata.topics]
    parts += [f"topic {t}: does not exist (yet)" for t in missing]
    return "reachable; " + "; ".join(parts) if parts else "reachable; no matching topic yet"
