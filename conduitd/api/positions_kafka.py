"""A Kafka partition's reset target: an offset checked against the partition's watermarks, or
the first offset at or after a time.

The time is looked up with `offsets_for_times` (ListOffsets) and the broker's answer is checked
against the records beside it: the record at the answer is at or after the time, the one before
it is earlier. A broker that answers wrongly (Tansu answers the first offset for every time) is
then searched instead: a binary search over the partition's records by their timestamps, which
takes the timestamps to grow with the offsets (CreateTime set by well-behaved producers, or
LogAppendTime). All of it by a consumer of its own that assigns the partition and joins no group.
"""

from __future__ import annotations

import asyncio
from typing import Any

from conduitd.api.problems import Problem
from conduitd.api.reset_target import Ask, Target, compare
from conduitd.core.records import Position

_WAIT = 10.0


async def kafka_target(source: Any, partition: str, current: Position, ask: Ask) -> Target:
    from conduitd.sources.kafka.topics import wanted

    topic, _, number = partition.rpartition(":")
    if not topic or not number.isdigit() or len(number) > 9 or not wanted(source, topic):
        raise Problem(422, f"{partition!r} is not a partition source {source.name!r} reads (topic:number)")
    at = int(ask.timestamp.timestamp() * 1000) if ask.timestamp is not None else None
    low, high, found, how = await asyncio.to_thread(_offsets, source, topic, int(number), at)
    offset = ask.offset if ask.offset is not None else found
    assert offset is not None
    if not low <= offset <= high:
        raise Problem(422, f"partition {partition!r} holds offsets {low} to {high - 1} (the next is {high}); "
                           f"{offset} is outside")
    old = int(current["offset"]) if isinstance(current, dict) and current.get("offset") is not None else None
    direction, count = compare(old, offset, "records")
    note = None if old is not None else f"no checkpoint yet: the source would start at its `start` ({source.start})"
    if at is not None:
        note = (f"the first offset at or after {ask.timestamp.isoformat() if ask.timestamp else ''}"
                f"{' (none: the end of the partition)' if found == high else ''}; {how}")
    return Target({"offset": offset}, direction, count, "records", note)


def _offsets(source: Any, topic: str, number: int, at: int | None) -> tuple[int, int, int | None, str]:
    """(low, high watermark, first offset at or after `at` ms, how it was found)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from conduitd.sources.kafka.clients import create_client

    client = {k: v for k, v in source.client.items() if not k.startswith(("session.", "heartbeat."))}
    settings = {**client, "bootstrap.servers": source.brokers, "group.id": source.group_id,
                "enable.auto.commit": False, "enable.partition.eof": False}
    consumer = create_client(Consumer, settings, source.client, f'source "{source.name}"')
    try:
        metadata = consumer.list_topics(topic, timeout=_WAIT)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or number not in found.partitions:
            raise Problem(422, f"topic {topic!r} has no partition {number}")
        low, high = (int(o) for o in consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=_WAIT))
        if at is None:
            return low, high, None, ""
        [answer] = consumer.offsets_for_times([TopicPartition(topic, number, at)], timeout=_WAIT)
        if answer.error is not None:
            raise Problem(503, f"the broker did not look up the time: {answer.error}")
        told = high if answer.offset < 0 else int(answer.offset)
        records = _Records(consumer, topic, number)
        if records.first_at_or_after(told, at, low, high):
            return low, high, told, "the broker's time index"
        return low, high, records.search(at, low, high), ("the broker's answer did not fit its records: found by "
                                                          "their timestamps")
    except KafkaException as exc:
        raise Problem(503, f"Kafka brokers {source.brokers} did not answer: {exc}") from None
    finally:
        consumer.close()


class _Records:
    """Timestamps of one partition's records, read one at a time."""

    def __init__(self, consumer: Any, topic: str, number: int) -> None:
        self.consumer, self.topic, self.number = consumer, topic, number

    def timestamp(self, offset: int) -> int:
        """The timestamp (ms) of the record at `offset` (or the next one there is: compaction)."""
        from confluent_kafka import TopicPartition

        self.consumer.assign([TopicPartition(self.topic, self.number, offset)])
        for _ in range(int(_WAIT / 0.1)):  # polls of 0.1 s, up to _WAIT seconds of them
            message = self.consumer.poll(0.1)
            if message is None:
                continue
            if message.error() is not None:
                raise Problem(503, f"reading {self.topic}:{self.number} at {offset}: {message.error()}")
            if message.offset() >= offset:
                return int(message.timestamp()[1])
        raise Problem(503, f"the record at offset {offset} of {self.topic}:{self.number} did not come")

    def first_at_or_after(self, offset: int, at: int, low: int, high: int) -> bool:
        """Whether `offset` is the first record at or after `at` (its neighbours say so)."""
        if offset < high and self.timestamp(offset) < at:
            return False
        return offset <= low or self.timestamp(offset - 1) < at

    def search(self, at: int, low: int, high: int) -> int:
        """The first offset in [low, high) whose record is at or after `at`; `high` if none."""
        while low < high:
            middle = (low + high) // 2
            if self.timestamp(middle) < at:
                low = middle + 1
            else:
                high = middle
        return low
