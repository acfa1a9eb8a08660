"""The confluent-kafka consumer on a thread of its own (a consumer must stay on one thread).

The thread polls in batches and hands them over through a small bounded queue; when the queue is
full it pauses its partitions and keeps polling (so rebalances and heartbeats are served) until
there is room. Rebalance callbacks run on this thread and block it while the pipeline finishes
or drops in-flight work (revoke) and while the committed positions are read (assign): partitions
start exactly at the destination's checkpoint, never at the group's committed offsets.

Under --once the thread joins no group: it assigns itself every partition of the wanted topics
(a batch run needs no membership, and must not wait on a group whose rebalance never completes),
reads each up to the high watermark of its first fetch response, and says `done`; the checkpoint
compare-and-set still fences it against a daemon of the same group.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from conduitd.config import KafkaSourceConfig
from conduitd.core.records import Position
from conduitd.sources.kafka.clients import Repeats, create_client
from conduitd.sources.kafka.topics import incomplete, matching_topics, partitions_of
from conduitd.sources.kafka.watch import AssignmentWatch, limit_for

log = logging.getLogger(__name__)


FETCH_QUEUE_BACKOFF_MS = 20
"""conduitd's default for librdkafka's `fetch.queue.backoff.ms` (a `client` setting overrides it)."""

PAUSE_AFTER = 5.0
"""Seconds the hand-over may stay full before the partitions are paused."""

METADATA_WAIT = 10.0
"""Seconds --once waits for a wanted topic's metadata to settle (a topic just created has no
leader yet) before it reads the partitions listed so far."""


def partition_key(topic: str | None, partition: int | None) -> str:
    """The partition name used in checkpoints and the DLQ: `topic:partition`."""
    return f"{topic}:{partition}"


def offset_of(message: Message) -> int:
    """The record's offset (None only on error events, which never get this far)."""
    return int(message.offset() or 0)


def by_partition(messages: list[Message]) -> dict[str, list[Message]]:
    """The records of a poll grouped by partition, each in the order polled. A poll holds long
    runs of one partition (a fetch returns a partition's records together), so the runs are
    found with array operations and copied as slices, not record by record."""
    if not messages:
        return {}
    topics = list(map(Message.topic, messages))
    if topics.count(topics[0]) != len(topics):
        grouped: dict[str, list[Message]] = {}
        for message in messages:
            grouped.setdefault(partition_key(message.topic(), message.partition()), []).append(message)
        return grouped
    numbers = np.fromiter(map(Message.partition, messages), dtype=np.int64, count=len(messages))
    bounds = [0, *(np.flatnonzero(numbers[1:] != numbers[:-1]) + 1).tolist(), len(messages)]
    runs: dict[str, list[Message]] = {}
    for start, end in pairwise(bounds):
        runs.setdefault(partition_key(topics[0], int(numbers[start])), []).extend(messages[start:end])
    return runs


@dataclass
class Polled:
    """Records from one poll, all of one assignment epoch, by partition (`by_partition`); `done`
    ends a --once run."""

    epoch: int
    partitions: dict[str, list[Message]]
    polled_at: float = 0.0
    poll_seconds: float = 0.0
    done: bool = False


@dataclass
class PartitionProgress:
    """What the thread knows of one assigned partition."""

    start: Position
    next_offset: int | None = None
    high_watermark: int | None = None
    first_high_watermark: int | None = None
    last_timestamp: float | None = None


@dataclass
class Assignment:
    epoch: int = 0
    partitions: dict[str, PartitionProgress] = field(default_factory=dict)


class ConsumerThread(threading.Thread):
    """See the module docstring. `on_revoke` and `load_positions` are called on this thread and
    block it; they hand the work to the event loop."""

    def __init__(self, config: KafkaSourceConfig, *, once: bool, poll_records: int,
                 load_positions: Callable[[], Mapping[str, Position]], on_revoke: Callable[[], None]) -> None:
        super().__init__(name=f"conduitd-kafka-{config.name}", daemon=True)
        self.config = config
        self.once = once
        self.poll_records = poll_records
        self.load_positions = load_positions
        self.on_revoke = on_revoke
        self.out: queue.Queue[Polled] = queue.Queue(maxsize=2)
        self.assignment = Assignment()
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.stopped_polling = threading.Event()
        self.error: str | None = None
        self.last_contact: float | None = None
        self.fatal: BaseException | None = None
        self._acks: queue.SimpleQueue[dict[str, int]] = queue.SimpleQueue()
        self._paused = False
        self._last_probe = 0.0
        self._resync = threading.Event()
        self.watch = AssignmentWatch(limit_for(config.client))
        self._direct = False  # --once: the partitions were assigned directly (maybe none)
        self._done_epoch: int | None = None
        self._repeats = Repeats()  # errors warned of since the brokers last answered

    def acknowledge(self, offsets: Mapping[str, int]) -> None:
        """Commit these next offsets to the group (advisory, for lag tools); done on this thread."""
        self._acks.put(dict(offsets))

    def resync(self) -> None:
        """Drop everything read so far and re-seek every assigned partition to its committed
        position (after a compare-and-set lost to another owner). Called from the event loop."""
        with self.lock:
            self.assignment = Assignment(self.assignment.epoch + 1, self.assignment.partitions)
        self._resync.set()

    def stop_polling(self) -> None:
        self.stopped_polling.set()

    def close(self) -> None:
        self.closing.set()

    def client_config(self) -> dict[str, Any]:
        return {
            # librdkafka stops fetching a partition whose prefetched records pass its thresholds
            # for this long (default 1 s): conduitd drains 50,000 records a poll, so the default
            # left every poll empty for up to a second after each drain (measured: 400-600 ms of
            # empty polls per 1.3 s at 200k records/s). The threshold check it repeats is local.
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            **self.config.client,
            "bootstrap.servers": self.config.brokers,
            "group.id": self.config.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.config.start,
            "error_cb": self._on_error,
        }

    def run(self) -> None:
        try:
            consumer = create_client(Consumer, self.client_config(), self.config.client,
                                     f'source "{self.config.name}"')
        except Exception as exc:  # noqa: BLE001 - reported to the event loop, which raises it
            self.fatal = exc
            return
        try:
            if self.once:
                if not self._assign_directly(consumer):
                    return
            else:
                topics = list(self.config.topics) or [f"^{self.config.topic_pattern}"]
                consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                   on_lost=self._on_revoke)
                self.watch.waiting()
            self._loop(consumer)
        except Exception as exc:  # noqa: BLE001 - reported to the event loop, which raises it
            self.fatal = exc
        finally:
            self._commit_acks(consumer, asynchronous=False)
            consumer.close()  # leaves the group: its partitions move to the other members now

    def _loop(self, consumer: Consumer) -> None:
        pending: Polled | None = None
        full_since: float | None = None
        while not self.closing.is_set():
            self._commit_acks(consumer, asynchronous=True)
            if self._resync.is_set():
                self._resync.clear()
                self._reseek(consumer)
            if self.stopped_polling.is_set():
                consumer.poll(0.1)  # serve callbacks only
                continue
            if pending is not None and pending.epoch != self.assignment.epoch:
                pending = None  # read under an assignment that has been revoked
            if pending is not None:
                held: Polled = pending
                try:
                    self.out.put(held, timeout=0.05)
                    pending, full_since = None, None
                    self._pause(consumer, False)
                except queue.Full:
                    # Backpressure. librdkafka's own prefetch is bounded, so a short wait needs no
                    # pause (pausing drops the prefetched records, and refetching them costs more
                    # than the wait). Only a long stall pauses the partitions and polls, which keeps
                    # the group membership and serves rebalances.
                    full_since = full_since or time.monotonic()
                    if time.monotonic() - full_since > PAUSE_AFTER:
                        self._pause(consumer, True)
                        self._give_back(consumer, consumer.poll(0.05))
                continue
            if self.once and self.caught_up():
                # Said once per epoch: a commit that then loses its compare-and-set re-seeks
                # (a new epoch) and the rest is read again from the committed positions.
                epoch = self.assignment.epoch
                if self._done_epoch != epoch:
                    self._done_epoch = epoch
                    self._put_until_closing(Polled(epoch, {}, done=True))
                else:
                    self._resync.wait(0.1)
                continue
            self._probe(consumer)
            started = time.monotonic()
            messages = consumer.consume(num_messages=self.poll_records, timeout=0.2)
            records = messages
            if any(map(Message.error, messages)):
                records = [m for m in messages if self._keep(m)]
            grouped = by_partition(records)
            self._track(consumer, grouped)
            if records:
                pending = Polled(self.assignment.epoch, grouped, time.time(), time.monotonic() - started)

    def _give_back(self, consumer: Consumer, message: Message | None) -> None:
        """A record a poll returned while the hand-over is full (one already in flight, or of a
        partition a rebalance inside the poll assigned): not kept, which would let memory grow,
        but sought back to, so it is fetched again once there is room."""
        if message is None or not self._keep(message):
            return
        try:
            where = TopicPartition(str(message.topic()), int(message.partition() or 0), offset_of(message))
            consumer.seek(where)
            consumer.pause([where])
        except KafkaException as exc:
            log.warning("could not hand back record %s:%s@%s: %s", message.topic(), message.partition(),
                        message.offset(), exc)
            raise

    def _put_until_closing(self, polled: Polled) -> None:
        while not self.closing.is_set():
            try:
                self.out.put(polled, timeout=0.1)
                return
            except queue.Full:
                continue

    def caught_up(self) -> bool:
        """Every assigned partition has been read up to the high watermark it had when first seen
        (true at once for a direct assignment of no partition: no topic matched)."""
        with self.lock:
            partitions = self.assignment.partitions
            if not partitions:
                return self._direct
            for progress in partitions.values():
                target, current = progress.first_high_watermark, progress.next_offset
                if target is None or current is None or current < target:
                    return False
            return True

    def _keep(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            self._on_error(error)
        return False

    def _track(self, consumer: Consumer | None, polled: Mapping[str, list[Message]]) -> None:
        """Progress per partition, for --once (caught up?) and for lag in /status and /metrics."""
        with self.lock:
            partitions = self.assignment.partitions
            for key, records in polled.items():  # the last record of each partition is what counts
                progress = partitions.get(key)
                if progress is not None:
                    progress.next_offset = offset_of(records[-1]) + 1
                    kind, stamp = records[-1].timestamp()
                    if kind != 0:
                        progress.last_timestamp = stamp / 1000
            for key, progress in partitions.items():
                if consumer is None:
                    break
                topic, _, number = key.rpartition(":")
                # The high watermark carried by fetch responses (cached): brokers such as Tansu
                # under-report ListOffsets, the fetch response is right.
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, int(number)), cached=True)
                if high is not None and high >= 0:
                    progress.high_watermark = high
                    if progress.first_high_watermark is None:
                        progress.first_high_watermark = high
                    if progress.next_offset is None and progress.start is None:
                        # Nothing read yet and no stored position: the partition starts at its low
                        # watermark (earliest) or at its end (latest: then nothing is due).
                        if self.config.start == "latest":
                            progress.next_offset = high
                        elif low is not None and low >= 0:
                            progress.next_offset = low
        if polled:
            self.last_contact = time.monotonic()
            self.error = None
            self._repeats.reset()

    def _probe(self, consumer: Consumer) -> None:
        """Ask the cluster for metadata now and then (every second while failing): an idle
        consumer gets no other sign of whether its brokers are reachable."""
        now = time.monotonic()
        if now - self._last_probe < (1.0 if self.error or self.last_contact is None else 5.0):
            return
        self._last_probe = now
        try:
            metadata = consumer.list_topics(timeout=2.0)
        except KafkaException as exc:
            self.error = f"Kafka brokers {self.config.brokers} unreachable: {exc}"
            return
        self.last_contact = time.monotonic()
        self.error = None
        self.watch.topics_exist(bool(partitions_of(self.config, metadata.topics)))

    def _pause(self, consumer: Consumer, pause: bool) -> None:
        if pause == self._paused:
            return
        assigned = consumer.assignment()
        if assigned:
            (consumer.pause if pause else consumer.resume)(assigned)
        self._paused = pause

    def _commit_acks(self, consumer: Consumer, *, asynchronous: bool) -> None:
        latest: dict[str, int] = {}
        while True:
            try:
                latest.update(self._acks.get_nowait())
            except queue.Empty:
                break
        with self.lock:
            owned = {k: v for k, v in latest.items() if k in self.assignment.partitions}
        if not owned:
            return
        offsets = [TopicPartition(k.rpartition(":")[0], int(k.rpartition(":")[2]), v) for k, v in owned.items()]
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - advisory: the checkpoint in the destination is what counts
            log.debug("committing group offsets failed (advisory only): %s", exc)

    def _assign_directly(self, consumer: Consumer) -> bool:
        """--once: assign every partition of the wanted topics, as they are now, without joining
        the group. False when closed before the brokers answered."""
        deadline: float | None = None
        while not self.closing.is_set():
            try:
                metadata = consumer.list_topics(timeout=2.0)
            except KafkaException as exc:
                self.error = f"Kafka brokers {self.config.brokers} unreachable: {exc}"
                self.closing.wait(0.5)
                continue
            self.last_contact = time.monotonic()
            self.error = None
            unsettled = incomplete(self.config, metadata.topics)
            deadline = deadline or time.monotonic() + METADATA_WAIT
            if unsettled and time.monotonic() < deadline:
                self.closing.wait(0.2)
                continue
            for topic in unsettled:
                log.warning("topic %s: metadata incomplete (%s); reading the partitions it lists",
                            topic, metadata.topics[topic].error)
            for topic in self.config.topics:
                if topic not in metadata.topics:
                    log.warning("topic %s does not exist: nothing to read from it", topic)
            if self.config.topic_pattern is not None and not matching_topics(self.config, metadata.topics):
                log.warning("no topic matches topic_pattern %r: nothing to read", self.config.topic_pattern)
            self._direct = True
            wanted = [TopicPartition(t, p) for t, p in partitions_of(self.config, metadata.topics)]
            names = self._start(consumer, wanted)
            log.info("reading %d partition(s) by direct assignment (--once joins no group): %s",
                     len(wanted), ", ".join(names) or "none")
            return True
        return False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.watch.assigned()
        names = self._start(consumer, partitions)
        log.info("assigned %d partition(s): %s", len(partitions), ", ".join(names) or "none")

    def _start(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[str]:
        """Seek each partition to its checkpoint (or `start`) and take it: the new assignment.
        Returns the partitions' names, sorted."""
        stored = self.load_positions()
        assignment: dict[str, PartitionProgress] = {}
        for tp in partitions:
            key = partition_key(tp.topic, tp.partition)
            position = stored.get(key)
            if position is not None:
                tp.offset = int(position["offset"])
            else:
                tp.offset = OFFSET_BEGINNING if self.config.start == "earliest" else OFFSET_END
            assignment[key] = PartitionProgress(
                start=position, next_offset=int(position["offset"]) if position is not None else None)
        with self.lock:
            self.assignment = Assignment(self.assignment.epoch, assignment)
        self._paused = False
        consumer.assign(partitions)
        return sorted(assignment)

    def _reseek(self, consumer: Consumer) -> None:
        stored = self.load_positions()
        with self.lock:
            partitions = self.assignment.partitions
            for key, progress in partitions.items():
                position = stored.get(key)
                progress.start = position
                progress.next_offset = int(position["offset"]) if position is not None else None
        for key, progress in partitions.items():
            topic, _, number = key.rpartition(":")
            offset = progress.next_offset
            if offset is None:
                offset = OFFSET_BEGINNING if self.config.start == "earliest" else OFFSET_END
            try:
                consumer.seek(TopicPartition(topic, int(number), offset))
            except KafkaException as exc:
                log.warning("re-seeking %s failed: %s", key, exc)
        with self.lock:
            # Records polled between resync() and the seeks came from the old read positions:
            # a new epoch makes them stale too.
            self.assignment = Assignment(self.assignment.epoch + 1, self.assignment.partitions)
        self._pause(consumer, False)  # a paused partition is not fetched after a seek
        log.info("re-sought %d partition(s) to their committed positions", len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.assignment = Assignment(self.assignment.epoch + 1, {})
        self._drain_out()
        self.on_revoke()  # blocks until no commit of the old assignment is in flight
        self.watch.waiting()  # from now on the group owes this member an assignment
        log.info("revoked %d partition(s)", len(partitions))

    def _drain_out(self) -> None:
        while True:
            try:
                self.out.get_nowait()
            except queue.Empty:
                return

    def _on_error(self, error: KafkaError) -> None:
        self.error = f"Kafka: {error.str()}"
        if error.fatal():
            self.fatal = RuntimeError(self.error)
        # librdkafka repeats an error on every retry (a refused connection: hundreds a second):
        # the repeats are counted, not each said, until the brokers answer again.
        said = self._repeats.say(self.error)
        if said is not None:
            log.warning("%s", said)
