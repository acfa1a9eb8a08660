"""Which topics and partitions a Kafka source reads, from cluster metadata.

One definition for `--once` (which assigns the partitions itself), for the daemon's check that its
subscription matches anything, and for `validate`: the named `topics`, or every topic whose name
`topic_pattern` matches from its start (as librdkafka's `^pattern` subscription does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from conduitd.config import KafkaSourceConfig


class TopicMetadata(Protocol):
    """The part of confluent-kafka's TopicMetadata used here."""

    partitions: Mapping[int, object]
    error: object | None


def wanted(config: KafkaSourceConfig, topic: str) -> bool:
    """Whether the source reads `topic` (internal topics such as `__consumer_offsets` only by name)."""
    if config.topics:
        return topic in config.topics
    if topic.startswith("__"):
        return False
    return config.topic_pattern is not None and re.match(config.topic_pattern, topic) is not None


def matching_topics(config: KafkaSourceConfig, names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if wanted(config, name))


def partitions_of(config: KafkaSourceConfig, topics: Mapping[str, TopicMetadata]) -> list[tuple[str, int]]:
    """Every (topic, partition) the source reads, sorted."""
    return sorted((topic, int(number)) for topic in matching_topics(config, topics)
                  for number in topics[topic].partitions)


def incomplete(config: KafkaSourceConfig, topics: Mapping[str, TopicMetadata]) -> list[str]:
    """Wanted topics whose metadata is not usable yet (e.g. just created, no leader elected)."""
    return [t for t in matching_topics(config, topics) if topics[t].error is not None or not topics[t].partitions]
