"""The Kinesis source: every shard of the configured streams read by a task of its own, parents
before children, chunks handed over with positions the destination commits with the rows.

Each shard task reads GetRecords answers (at most `gets_per_second` per shard, `Limit` halved
after a throttle and grown back after successes) into chunks; a chunk's end is the last sequence
number read and whether the shard ended there (`NextShardIterator` absent). A child is started
only once every parent's end is acknowledged (committed): that commit is the one transaction that
also holds the parent's last rows. An expired iterator is made again from the position; a lost
connection is retried with backoff (`problem` says why; under --once for `unreachable_after`).

With a destination that keeps leases (`lease_ttl`), each shard is a lease of the pipeline: a task
first wins its shard's lease within this replica's fair share of the readable shards, reads from
the stamped committed position, and stops when the lease is lost (the whole source moves to a new
epoch: what was read and not committed is read again from the checkpoints).

Under --once each shard is read until it ends or GetRecords says it is caught up
(`MillisBehindLatest` 0), children of shards ended in the run included; the run ends when no shard
is left to read and every end read is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from conduitd.core.records import Chunk, Position
from conduitd.core.timings import Timings
from conduitd.errors import DependencyUnreachable
from conduitd.sources.base import Checkpoints, Leases
from conduitd.sources.kinesis.api import IteratorExpired, KinesisApi, Throttled
from conduitd.sources.kinesis.decode import ROW_KEY, decode_records
from conduitd.sources.kinesis.settings import KinesisSourceConfig
from conduitd.sources.kinesis.shards import Shard, finished, readable, sequence_of, shards_of
from conduitd.sources.lease_keeper import LeaseKeeper

log = logging.getLogger(__name__)
Outcome = Literal["end", "caught_up", "stopped", "lost", "epoch"]
_MIN_LIMIT = 100
_MAX_BACKOFF = 10.0


class KinesisSource:
    """See the module docstring."""

    def __init__(self, config: KinesisSourceConfig, *, pipeline: str, once: bool, max_rows: int,
                 unreachable_after: float, api: KinesisApi | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.once = once
        self.max_rows = max_rows
        self.unreachable_after = unreachable_after
        self.api = api or KinesisApi(config)
        self.epoch = 0
        self._queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue(maxsize=8)
        self._shards: dict[str, Shard] = {}
        self._done: set[str] = set()
        """Partitions whose end is committed (or, `start: latest`, closed before they were first read)."""
        self._committed_end: set[str] = set()
        self._ended: set[str] = set()
        """Partitions whose end was handed over and is not acknowledged yet."""
        self._caught_up: set[str] = set()
        """--once: partitions read up to where the stream stood, or that another replica reads."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._keepers: dict[str, LeaseKeeper] = {}
        self._releases: set[asyncio.Task[None]] = set()
        self._lag: dict[str, dict[str, float]] = {}
        self._problems: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._extra = {"pipeline": pipeline}

    # -- what the pipeline asks --------------------------------------------------------------

    def lag(self) -> dict[str, dict[str, float]]:
        return {p: dict(v) for p, v in self._lag.items() if p not in self._done}

    def problem(self) -> str | None:
        for where, why in sorted(self._problems.items()):
            return f"source {self.config.name!r}: {where}: {why}"
        for keeper in self._keepers.values():
            if keeper.problem is not None:
                return f"source {self.config.name!r}: {keeper.problem}"
        return None

    def leases(self) -> dict[str, dict[str, Any]]:
        """Who reads each shard, for /status."""
        return {p: {"owner": k.held.leases.owner, "epoch": k.held.epoch}
                for p, k in sorted(self._keepers.items()) if k.held is not None}

    async def resync(self) -> bool:
        self.epoch += 1  # every shard task starts again from the committed position
        self._ended.clear()
        self._caught_up.clear()
        self._wake.set()
        return True

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        for partition, position in positions.items():
            if finished(position) and partition in self._shards:
                self._done.add(partition)
                self._committed_end.add(partition)
                self._ended.discard(partition)
                self._lag.pop(partition, None)
                keeper = self._keepers.pop(partition, None)
                if keeper is not None:  # its end is committed: nothing more to read under it
                    task = asyncio.create_task(keeper.release())
                    self._releases.add(task)
                    task.add_done_callback(self._releases.discard)
                self._wake.set()  # its children may be read now

    async def close(self) -> None:
        await self._stop_tasks()
        keepers, self._keepers = list(self._keepers.values()), {}
        for keeper in keepers:
            await keeper.release()
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self.api.close()

    # -- the chunks --------------------------------------------------------------------------

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        committed = await checkpoints.committed()
        self._committed_end = {p for p, position in committed.items() if finished(position)}
        self._done = set(self._committed_end)
        leases = getattr(checkpoints, "leases", None) if self.config.lease_ttl else None
        next_discovery = 0.0
        failing_since: float | None = None
        try:
            while not stop.is_set():
                for partition, task in list(self._tasks.items()):
                    if task.done():
                        del self._tasks[partition]
                if self._wake.is_set() or time.monotonic() >= next_discovery:
                    self._wake.clear()
                    try:
                        await self._discover(committed)
                        failing_since = None
                        self._problems.pop("shards", None)
                    except (DependencyUnreachable, Throttled) as exc:
                        failing_since = failing_since or time.monotonic()
                        self._problems["shards"] = str(exc)
                        if isinstance(exc, DependencyUnreachable) and self.once \
                                and time.monotonic() - failing_since > self.unreachable_after:
                            raise
                        log.warning("source %r: %s; retrying", self.config.name, exc, extra=self._extra)
                    self._start(checkpoints, stop, leases)
                    next_discovery = time.monotonic() + (1.0 if failing_since else self.config.shard_discovery_interval)
                if self.once and not self._tasks and not self._ended and self._queue.empty() and failing_since is None:
                    return  # every shard read as far as it went, every end committed
                item = await self._next(stop, next_discovery)
                if isinstance(item, BaseException):
                    raise item
                if item is not None and item.epoch == self.epoch:
                    yield item
        finally:
            await self._stop_tasks()

    async def _next(self, stop: asyncio.Event, until: float) -> Chunk | BaseException | None:
        """The next chunk or failure of a shard task; None when woken, stopped or at `until`."""
        get = asyncio.ensure_future(self._queue.get())
        waits = [get, asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, until - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits[1:]:
                wait.cancel()
        if get.done():
            return get.result()
        get.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await get
        return None if not get.done() or get.cancelled() else get.result()

    async def _discover(self, committed: Mapping[str, Position]) -> None:
        for stream in self.config.stream_names:
            for shard in shards_of(stream, await self.api.list_shards(stream)):
                self._shards.setdefault(shard.partition, shard)
                if self.config.start == "latest" and shard.closed and shard.partition not in committed \
                        and not any(f"{stream}:{p}" in self._committed_end for p in shard.parents):
                    self._done.add(shard.partition)  # closed before it was first read: nothing is after "latest"

    def _start(self, checkpoints: Checkpoints, stop: asyncio.Event, leases: Leases | None) -> None:
        busy = set(self._tasks) | self._ended | self._caught_up
        for shard in readable(self._shards.values(), self._done):
            if shard.partition not in busy:
                self._tasks[shard.partition] = asyncio.create_task(
                    self._run_shard(shard, checkpoints, stop, leases), name=f"kinesis {shard.partition}")

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _readable_count(self) -> int:
        return len(readable(self._shards.values(), self._done))

    # -- one shard ---------------------------------------------------------------------------

    async def _run_shard(self, shard: Shard, checkpoints: Checkpoints, stop: asyncio.Event,
                         leases: Leases | None) -> None:
        partition = shard.partition
        try:
            keeper: LeaseKeeper | None = None
            if leases is not None:
                assert self.config.lease_ttl is not None
                keeper = self._keepers.get(partition) or LeaseKeeper(
                    leases, partition, pipeline=self.pipeline, ttl=self.config.lease_ttl, once=self.once,
                    count=self._readable_count, on_lost=self._drop_read, unreachable_after=self.unreachable_after)
                self._keepers[partition] = keeper
            while not stop.is_set():
                epoch = self.epoch
                lost: asyncio.Event | None = None
                stamp: Any = None
                if keeper is not None:
                    held = await keeper.acquire(stop)
                    if held is None:
                        self._caught_up.add(partition)  # stopped; or, under --once, another replica reads it
                        return
                    position: Position = held.position
                    stamp, lost = held.stamp, keeper.lost
                else:
                    position = (await checkpoints.committed()).get(partition)
                if finished(position):
                    await self.acknowledge({partition: position})  # another replica read it to its end
                    return
                try:
                    outcome = await self._read_shard(shard, position, stamp, epoch, lost, stop)
                finally:
                    if keeper is not None:
                        await keeper.stop_keeping()
                if outcome == "end":
                    self._ended.add(partition)
                    return
                if outcome == "caught_up":
                    self._caught_up.add(partition)
                    return
                if outcome == "lost":
                    log.warning("pipeline %s: the lease on %s moved to another replica; what was read and not "
                                "committed is dropped (the new owner reads it)", self.pipeline, partition,
                                extra=self._extra)
                # "epoch": start again from the committed position (under a lease: claimed again)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the pipeline's side, which raises it
            await self._queue.put(exc)
        finally:
            self._wake.set()  # the main loop looks again at what is left to read

    def _drop_read(self) -> None:
        self.epoch += 1  # what is queued was read under a lost lease: the pipeline drops it
        self._ended.clear()
        self._caught_up.clear()
        self._wake.set()

    async def _iterator(self, shard: Shard, sequence: str | None) -> str:
        c = self.config
        if sequence is not None:
            return await self.api.iterator(shard.stream, shard.shard_id, "AFTER_SEQUENCE_NUMBER", sequence=sequence)
        if any(f"{shard.stream}:{p}" in self._committed_end for p in shard.parents):
            kind = "TRIM_HORIZON"  # a child of a shard this pipeline read: all of it follows what was read
        else:
            kind = c.start.upper()
        if kind == "AT_TIMESTAMP":
            return await self.api.iterator(shard.stream, shard.shard_id, kind, timestamp=c.start_timestamp)
        return await self.api.iterator(shard.stream, shard.shard_id, kind)

    async def _read_shard(self, shard: Shard, position: Position, stamp: Any, epoch: int,
                          lost: asyncio.Event | None, stop: asyncio.Event) -> Outcome:
        """Chunks of the shard after `position` until it ends, is caught up (--once), the source
        moves to a new epoch, the lease is lost, or the pipeline stops."""
        c = self.config
        partition = shard.partition
        sequence = sequence_of(position)
        iterator: str | None = None
        most = min(c.records_per_get, max(1, self.max_rows))
        limit = most
        pause = 1.0 / c.gets_per_second
        next_call = 0.0
        failures = 0
        failing_since: float | None = None
        while True:
            if stop.is_set():
                return "stopped"
            if self.epoch != epoch:
                return "epoch"
            if lost is not None and lost.is_set():
                return "lost"
            wait = next_call - time.monotonic()
            if wait > 0:
                await _wait(stop, wait)
                continue
            timings = Timings()
            try:
                if iterator is None:
                    iterator = await self._iterator(shard, sequence)
                next_call = time.monotonic() + pause
                with timings.stage("poll"):
                    answer = await self.api.get_records(shard.stream, shard.shard_id, iterator, limit)
            except (Throttled, IteratorExpired, DependencyUnreachable) as exc:
                failures += 1
                if isinstance(exc, Throttled):
                    limit = max(min(_MIN_LIMIT, max(1, most // 2)), limit // 2)
                elif isinstance(exc, IteratorExpired):
                    iterator = None  # made again from the position
                    if failures == 1:
                        continue
                if isinstance(exc, DependencyUnreachable):
                    failing_since = failing_since or time.monotonic()
                    self._problems[partition] = str(exc)
                    if self.once and time.monotonic() - failing_since > self.unreachable_after:
                        raise
                    await self.api.close()
                    iterator = None
                log.log(logging.INFO if isinstance(exc, Throttled) else logging.WARNING, "source %r: %s; retrying",
                        c.name, exc, extra=self._extra)
                await _wait(stop, _backoff(failures))
                continue
            failures, failing_since = 0, None
            self._problems.pop(partition, None)
            records: list[dict[str, Any]] = answer.get("Records") or []
            following = answer.get("NextShardIterator")
            behind = answer.get("MillisBehindLatest")
            if behind is not None:
                self._lag[partition] = {"seconds": float(behind) / 1000.0}
            if limit < most and records:
                limit = min(most, limit * 2)
            if records or following is None:
                last = str(records[-1]["SequenceNumber"]) if records else sequence
                end: dict[str, Any] = {"sequence": last, "end": following is None}
                if stamp is not None:
                    end["lease"] = stamp
                with timings.stage("decode"):
                    decoded = await asyncio.to_thread(decode_records, c, shard.stream, shard.shard_id, partition,
                                                      records) if len(records) > 100 else \
                        decode_records(c, shard.stream, shard.shard_id, partition, records)
                chunk = Chunk(partition, position, end, decoded.rows, tuple(decoded.rejects), nbytes=decoded.nbytes,
                              epoch=epoch, timings=timings, row_offsets=decoded.row_offsets, row_key=ROW_KEY)
                await self._queue.put(chunk)
                position, sequence = end, last
            if following is None:
                self._lag[partition] = {"seconds": 0.0}
                return "end"
            iterator = str(following)
            if self.once and behind == 0 and len(records) < limit and not shard.closed:
                return "caught_up"
            if not records:
                await _wait(stop, c.poll_interval)


def _backoff(failures: int) -> float:
    return float(min(_MAX_BACKOFF, 0.2 * 2 ** min(failures, 8))) * (0.5 + random.random() / 2)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
