"""The Kafka source: micro-batched consumption with positions kept in the destination.

A consumer thread (`consumer.py`) polls; this side decodes each poll in a worker thread, one
chunk per partition, and yields the chunks. Partitions are assigned by the group (scale out by
running more processes with the same `group_id`); on every assignment each partition is sought
to the destination's checkpoint; on revocation everything read but not committed is dropped
(the source moves to a new epoch) before the partitions move.

Under --once the partitions are assigned directly (no group), and the run ends only once what it
handed over is committed: a commit refused by the compare-and-set (a daemon of the same group
moved a partition on) re-seeks, and the run reads on from the committed positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from itertools import compress

import numpy as np
from confluent_kafka import Message

from conduitd.config import KafkaSourceConfig
from conduitd.core.records import Chunk, Position
from conduitd.core.timings import Timings
from conduitd.errors import ConduitError, DependencyUnreachable
from conduitd.sources.base import Checkpoints
from conduitd.sources.kafka.consumer import ConsumerThread, Polled
from conduitd.sources.kafka.decode import decode_partition


class KafkaSource:
    """See the module docstring."""

    def __init__(self, config: KafkaSourceConfig, *, once: bool, max_rows: int, key_columns: Sequence[str],
                 tombstones: bool, unreachable_after: float) -> None:
        self.config = config
        self.once = once
        self.max_rows = max_rows
        self.key_columns = tuple(key_columns)
        self.tombstones = tombstones
        self.unreachable_after = unreachable_after
        self._thread: ConsumerThread | None = None
        self._ends: dict[str, Position] = {}
        self._ends_epoch = 0
        self._acked: dict[str, int] = {}
        self._progress = asyncio.Event()  # an acknowledge or a resync: --once looks again

    @property
    def epoch(self) -> int:
        return self._thread.assignment.epoch if self._thread is not None else 0

    def problem(self) -> str | None:
        thread = self._thread
        return None if thread is None else thread.error or thread.watch.problem()

    def lag(self) -> dict[str, dict[str, float]]:
        thread = self._thread
        if thread is None:
            return {}
        now = time.time()
        lags: dict[str, dict[str, float]] = {}
        with thread.lock:
            for key, progress in thread.assignment.partitions.items():
                if progress.high_watermark is None or progress.next_offset is None:
                    continue
                records = max(0, progress.high_watermark - progress.next_offset)
                seconds = max(0.0, now - progress.last_timestamp) if records and progress.last_timestamp else 0.0
                lags[key] = {"records": records, "seconds": round(seconds, 3)}
        return lags

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        offsets = {k: int(v["offset"]) for k, v in positions.items()}
        for key, offset in offsets.items():
            self._acked[key] = max(offset, self._acked.get(key, offset))
        self._progress.set()
        if self._thread is not None:
            self._thread.acknowledge(offsets)

    async def resync(self) -> bool:
        if self._thread is None:
            return False
        self._thread.resync()
        self._progress.set()
        return True

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            thread.close()
            await asyncio.to_thread(thread.join)

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        if self._thread is not None:
            raise RuntimeError("the Kafka source is already running")
        loop = asyncio.get_running_loop()

        def load_positions() -> dict[str, Position]:
            return asyncio.run_coroutine_threadsafe(checkpoints.committed(), loop).result()

        def on_revoke() -> None:
            asyncio.run_coroutine_threadsafe(checkpoints.revoke(), loop).result()

        # A poll is at most one batch: what is read ahead of the commits stays in proportion to it.
        thread = ConsumerThread(self.config, once=self.once, poll_records=min(self.config.poll_records, self.max_rows),
                                load_positions=load_positions, on_revoke=on_revoke)
        self._thread = thread
        thread.start()
        started = time.monotonic()
        try:
            while not stop.is_set():
                if thread.fatal is not None:
                    raise _failed(thread.fatal)
                try:
                    polled = await asyncio.to_thread(thread.out.get, True, 0.2)
                except queue.Empty:
                    self._check_reachable(thread, started)
                    continue
                if polled.epoch != thread.assignment.epoch:
                    continue  # read under an assignment that has since been revoked
                if polled.done:
                    await checkpoints.flush()  # the last chunks need not wait for batch.max_wait
                    if await self._committed(thread, polled.epoch, stop):
                        return
                    continue  # a commit was refused: read on from the committed positions
                for chunk in await asyncio.to_thread(self._decode, polled):
                    yield chunk
        finally:
            thread.stop_polling()

    async def _committed(self, thread: ConsumerThread, epoch: int, stop: asyncio.Event) -> bool:
        """--once, all read: wait until every chunk handed over in this epoch is committed
        (True), or a commit was refused and the partitions re-sought (False). The chunks handed
        over were flushed: the batcher cut them at once."""
        due = dict(self._ends) if self._ends_epoch == epoch else {}
        while not stop.is_set():
            if thread.fatal is not None:
                raise _failed(thread.fatal)
            self._progress.clear()  # before looking: a later acknowledge or resync wakes the wait
            if thread.assignment.epoch != epoch:
                return False
            if all(self._acked.get(key, -1) >= int(end["offset"]) for key, end in due.items()):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.2)
        return True

    def _check_reachable(self, thread: ConsumerThread, started: float) -> None:
        if not self.once or thread.last_contact is not None:
            return
        if time.monotonic() - started > self.unreachable_after:
            raise DependencyUnreachable(
                f"Kafka brokers {self.config.brokers} unreachable for {self.unreachable_after:.0f}s: "
                f"{thread.error or 'no answer'}")

    def _decode(self, polled: Polled) -> list[Chunk]:
        """One chunk per partition (at most `max_rows` records each), in offset order."""
        thread = self._thread
        if thread is None:
            return []
        if polled.epoch != self._ends_epoch:
            self._ends, self._ends_epoch = {}, polled.epoch
        with thread.lock:
            starts = {k: p.start for k, p in thread.assignment.partitions.items()}
        chunks = []
        polled_ns = int(polled.polled_at * 1e9)
        for key, messages in polled.partitions.items():
            if key not in starts and key not in self._ends:
                continue  # no longer ours
            offsets = np.fromiter(map(Message.offset, messages), dtype=np.int64, count=len(messages))
            expected = self._ends.get(key, starts.get(key))
            if expected is not None:
                # Never hand over a record before the position this chunk claims to start at:
                # an overlap would be written twice. (Gaps are normal: compaction, markers.)
                keep = offsets >= int(expected["offset"])
                if not keep.all():
                    messages, offsets = list(compress(messages, keep.tolist())), offsets[keep]
                if not messages:
                    continue
            for first in range(0, len(messages), self.max_rows):
                part = messages[first:first + self.max_rows]
                timings = Timings()
                timings.add("poll", polled_ns - int(polled.poll_seconds * 1e9), polled_ns)
                with timings.stage("decode"):
                    decoded = decode_partition(self.config, key, part, offsets[first:first + self.max_rows],
                                               self.key_columns, self.tombstones)
                start = self._ends.get(key, starts.get(key))
                end = {"offset": decoded.next_offset}
                self._ends[key] = end
                chunks.append(Chunk(key, start, end, decoded.rows, tuple(decoded.rejects), decoded.nbytes,
                                    epoch=polled.epoch, timings=timings, row_offsets=decoded.row_offsets,
                                    deletes=decoded.deletes))
        return chunks


def _failed(fatal: BaseException) -> ConduitError:
    """The consumer thread's end as the error to raise: one of ours (a ConfigError for a client
    property librdkafka rejected) as it is, anything else wrapped."""
    return fatal if isinstance(fatal, ConduitError) else ConduitError(f"Kafka consumer failed: {fatal}")
