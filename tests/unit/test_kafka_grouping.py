"""Grouping a Kafka poll by partition: every record once, in its partition, in the order polled,
whether the poll holds one topic (the array path) or several (the general path)."""

from __future__ import annotations

import random

from confluent_kafka import Message

from conduitd.sources.kafka.consumer import by_partition


def poll(records: list[tuple[str, int]]) -> list[Message]:
    """Messages for (topic, partition) pairs, offsets counted per partition as a broker would."""
    next_offset: dict[tuple[str, int], int] = {}
    messages = []
    for topic, partition in records:
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        messages.append(Message(topic=topic, partition=partition, offset=offset, value=b"{}"))
    return messages


def expected(messages: list[Message]) -> dict[str, list[tuple[str, int, int]]]:
    out: dict[str, list[tuple[str, int, int]]] = {}
    for m in messages:
        out.setdefault(f"{m.topic()}:{m.partition()}", []).append((m.topic(), m.partition(), m.offset()))
    return out


def seen(groups: dict[str, list[Message]]) -> dict[str, list[tuple[str, int, int]]]:
    return {key: [(m.topic(), m.partition(), m.offset()) for m in ms] for key, ms in groups.items()}


def test_runs_of_one_topic_interleaved() -> None:
    rng = random.Random(3)
    pairs = [("t", p) for p in (0, 0, 1, 1, 1, 0, 2, 2, 1, 0)]
    pairs += [("t", rng.randrange(4)) for _ in range(500)]
    messages = poll(pairs)
    assert seen(by_partition(messages)) == expected(messages)


def test_several_topics_with_the_same_partition_numbers_stay_apart() -> None:
    messages = poll([("a", 0), ("a", 1), ("b", 0), ("a", 0), ("b", 0), ("b", 1)])
    groups = seen(by_partition(messages))
    assert groups == expected(messages)
    assert set(groups) == {"a:0", "a:1", "b:0", "b:1"}


def test_empty_and_single() -> None:
    assert by_partition([]) == {}
    (only,) = poll([("t", 5)])
    assert seen(by_partition([only])) == {"t:5": [("t", 5, 0)]}
