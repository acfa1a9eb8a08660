"""The polling loop every database-table source shares: resume after the committed position, read
chunk after chunk through a `TableReader` until caught up, then wait `poll_interval`; walk whole
tables pass after pass; reconnect with backoff when the connection is lost (readiness red,
`problem` says why; under --once for `unreachable_after` seconds, then exit code 5); start again
from the committed position on `resync`.

Leases (`lease_ttl`, a destination that keeps them): replicas running the same pipelines split the
tables, each table's lease kept by a `LeaseKeeper` (within the fair share, renewed, given up when
lost or more than the share); every position written under it carries its stamp, so a stalled
replica's late commit is refused by the checkpoint's compare-and-set (see `runtime.leases`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from datetime import time as time_of_day
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from conduitd.core.records import Chunk, Position, Reject
from conduitd.core.timings import Timings
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable
from conduitd.sources.base import Checkpoints
from conduitd.sources.lease_keeper import Held, LeaseKeeper
from conduitd.sources.tables.cursor import Plan, next_pass
from conduitd.sources.tables.lag_window import LagWindow

log = logging.getLogger(__name__)
_HELD_PAUSE = 0.1
"""Seconds between polls while running transactions hold the bound (they usually end in ms)."""
_ONCE_HELD_LIMIT = 2.0
"""Under --once, how long to wait for them before ending the run (the next run reads the rest)."""


@dataclass(frozen=True)
class Read:
    """One keyset read: the rows that fit their types, the rejects, the hidden texts (cursor, key)
    of the last row read (kept or not; None when none was), how many rows were read, their bytes."""

    rows: pa.Table
    rejects: list[Reject]
    last: list[str] | None
    count: int
    nbytes: int = 0


class TableReader(Protocol):
    """One database's side of a polling source."""

    where: str
    """What logs and errors may name: `PostgreSQL at host:port/db` (never a password)."""
    errors: tuple[type[BaseException], ...]
    """The driver's exceptions: each is a lost connection (`lost`) or a failed read (`failure`)."""

    async def connect(self) -> None:
        """Connect (again); DependencyUnreachable when the server cannot be reached, ConfigError when
        it refuses the login."""

    async def close(self) -> None: ...

    async def plan(self) -> Plan:
        """What the pipeline reads (columns, key, cursor); ConfigError when it cannot be read."""

    async def read(self, plan: Plan, after: dict[str, Any] | None, limit: int, partition: str) -> Read | None:
        """Up to `limit` rows after `after`, below the bound that keeps late commits safe; None
        when the bound allows nothing yet."""

    def lost(self, exc: BaseException) -> bool:
        """Whether `exc` is a lost connection (retried) rather than an error of the read itself."""

    def failure(self, exc: BaseException) -> ConduitError:
        """The error to stop the pipeline with for a database error that is not a lost connection."""

    def lag(self) -> dict[str, float]:
        """Lag units for /status and /metrics (e.g. how long a transaction holds the bound)."""

    async def present_keys(self, plan: Plan, names: Sequence[str], keys: Sequence[Sequence[str]]) -> set[int]:
        """Indexes into `keys` (texts of the columns `names`) of the rows the source still has."""


class PollingSource:
    """See the module docstring."""

    def __init__(self, reader: TableReader, partition: str, *, name: str, pipeline: str, once: bool, max_rows: int,
                 poll_interval: float, unreachable_after: float, lease_ttl: float | None = None,
                 key_scan: float | None = None, key_columns: Sequence[str] = (), lag_seconds: float = 0.0) -> None:
        self.reader = reader
        self.partition = partition
        self.name = name
        self.pipeline = pipeline
        self.once = once
        self.max_rows = max_rows
        self.poll_interval = poll_interval
        self.unreachable_after = unreachable_after
        self.lease_ttl = lease_ttl
        self.key_scan = key_scan
        self.key_columns = tuple(key_columns)
        self.lag_seconds = lag_seconds
        self.window: LagWindow | None = None
        """The lag window (`incremental.lag_seconds`), once the plan is known."""
        self._next_scan = time.monotonic() + (key_scan or 0.0)
        self.epoch = 0
        self.keeper: LeaseKeeper | None = None
        """The partition's lease, when the pipeline runs under leases."""
        self._problem: str | None = None

    def lag(self) -> dict[str, dict[str, float]]:
        return {self.partition: self.reader.lag()}

    def problem(self) -> str | None:
        if self._problem is None and self.keeper is not None and self.keeper.problem is not None:
            return f"source {self.name!r}: {self.keeper.problem}"
        return self._problem

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        return None

    async def resync(self) -> bool:
        self.epoch += 1  # what was read is dropped; the next poll starts from the committed position
        return True

    def leases(self) -> dict[str, dict[str, Any]]:
        """Who reads the partition, for /status."""
        held = None if self.keeper is None else self.keeper.held
        return {} if held is None else {self.partition: {"owner": held.leases.owner, "epoch": held.epoch}}

    async def close(self) -> None:
        if self.keeper is not None:  # after the pipeline's last commit: the next owner starts right after it
            await self.keeper.release()
        await self.reader.close()

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        leases = getattr(checkpoints, "leases", None) if self.lease_ttl else None
        if leases is None:
            async for chunk in self._read(checkpoints, stop, None):
                yield chunk
            return
        assert self.lease_ttl is not None
        keeper = LeaseKeeper(leases, self.partition, pipeline=self.pipeline, ttl=self.lease_ttl, once=self.once,
                             on_lost=self._drop_read, unreachable_after=self.unreachable_after)
        self.keeper = keeper
        while not stop.is_set():
            held = await keeper.acquire(stop)
            if held is None:
                return  # stopped; or, under --once, another replica holds the table
            try:
                async for chunk in self._read(checkpoints, stop, held, held.position, keeper.lost):
                    yield chunk
            finally:
                await keeper.stop_keeping()
            if not keeper.lost.is_set():
                return  # stopped or done: the lease is released by `close`, after the last commit
            log.warning("pipeline %s: the lease on %s moved to another replica; what was read and not committed "
                        "is dropped (the new owner reads it)", self.pipeline, self.partition,
                        extra={"pipeline": self.pipeline})

    def _drop_read(self) -> None:
        self.epoch += 1  # what is queued was read under the lost lease: the pipeline drops it

    async def _read(self, checkpoints: Checkpoints, stop: asyncio.Event, held: Held | None,
                    start: dict[str, Any] | None = None, lost: asyncio.Event | None = None) -> AsyncIterator[Chunk]:
        """Chunks of the partition from `start` (or the committed position) until stopped, done
        (--once) or, under a lease, until it is lost."""
        epoch = self.epoch
        position: dict[str, Any] | None = start if held is not None else (
            await checkpoints.committed()).get(self.partition)
        plan: Plan | None = None
        connected = False
        failing_since: float | None = None
        held_since: float | None = None
        while not stop.is_set() and not (lost is not None and lost.is_set()):
            if self.epoch != epoch:  # resync: start again from what is committed
                epoch = self.epoch
                if self.window is not None:
                    self.window.clear()
                position = (await checkpoints.committed()).get(self.partition)
                if held is not None and lost is not None and (position or {}).get("lease") != held.stamp:
                    lost.set()  # another replica stamped the checkpoint: the lease is theirs now
                    return
            try:
                if not connected:
                    await self.reader.connect()
                    connected = True
                if plan is None:
                    plan = await self.reader.plan()
                    self.window = self._window(plan)
                chunk, caught_up = await self._poll(plan, position, epoch, held.stamp if held else None)
                self._problem, failing_since = None, None
            except ConduitError as exc:
                if not isinstance(exc, DependencyUnreachable):
                    raise
                failing_since, connected = await self._lost(exc, failing_since, stop)
                continue
            except self.reader.errors as exc:
                if not self.reader.lost(exc):
                    raise self.reader.failure(exc) from None
                failing_since, connected = await self._lost(exc, failing_since, stop)
                continue
            if chunk is not None:
                position = chunk.end
                yield chunk
            elif not caught_up:
                held_since = held_since or time.monotonic()
                if self.once and time.monotonic() - held_since > _ONCE_HELD_LIMIT:
                    log.info("pipeline %s: running transactions hold the read of %s back; what they write is read "
                             "by the next run", self.pipeline, self.partition, extra={"pipeline": self.pipeline})
                    return
                await _wait(stop, min(self.poll_interval, _HELD_PAUSE))
                continue
            held_since = None
            if caught_up:
                if self.key_scan is not None and (self.once or time.monotonic() >= self._next_scan):
                    try:
                        async for deletes in self._scan(checkpoints, plan, position, epoch):
                            yield deletes
                    except self.reader.errors as exc:
                        if not self.reader.lost(exc):
                            raise self.reader.failure(exc) from None
                        failing_since, connected = await self._lost(exc, failing_since, stop)
                        continue  # the scan comes again, whole, once connected
                    self._next_scan = time.monotonic() + self.key_scan
                if self.once:
                    return
                await _wait(stop, self.poll_interval)

    async def _scan(self, checkpoints: Checkpoints, plan: Plan, position: dict[str, Any] | None,
                    epoch: int) -> AsyncIterator[Chunk]:
        """One pass of the key scan: the destination table's keys in chunks of `max_rows`, each
        looked up at the source; the keys the source no longer has come as a chunk of deletes (at
        the current position: the scan moves no position). A destination that cannot be read now
        skips the pass (it comes again after `key_scan`); a failed source read raises, before any
        delete of its chunk."""
        names = self.key_columns
        after: tuple[Any, ...] | None = None
        scanned = deleted = 0
        while True:
            try:
                keys = await checkpoints.table_keys(names, after, self.max_rows)
            except ConduitError as exc:
                if not exc.retriable:
                    raise
                log.warning("pipeline %s: key scan skipped, the destination cannot be read now: %s", self.pipeline,
                            exc, extra={"pipeline": self.pipeline})
                return
            if not keys:
                break
            found = await self.reader.present_keys(plan, names, [[_key_text(v) for v in k] for k in keys])
            missing = [k for i, k in enumerate(keys) if i not in found]
            scanned += len(keys)
            if missing:
                deleted += len(missing)
                rows = pa.table({n: pa.array([k[i] for k in missing]) for i, n in enumerate(names)})
                yield Chunk(self.partition, position, position, rows, epoch=epoch,
                            deletes=np.ones(len(missing), dtype=bool))
            if len(keys) < self.max_rows:
                break
            after = keys[-1]
        log.info("pipeline %s: key scan of %s: %d key(s) compared, %d gone from the source", self.pipeline,
                 self.partition, scanned, deleted, extra={"pipeline": self.pipeline})

    async def _lost(self, exc: BaseException, failing_since: float | None,
                    stop: asyncio.Event) -> tuple[float, bool]:
        since = failing_since or time.monotonic()
        await self.reader.close()
        cause = str(exc) if isinstance(exc, ConduitError) else f"connection lost: {str(exc) or type(exc).__name__}"
        self._problem = f"source {self.name!r}: {cause}"
        if self.once and time.monotonic() - since > self.unreachable_after:
            raise DependencyUnreachable(self._problem) from None
        log.warning("%s; retrying", self._problem, extra={"pipeline": self.pipeline})
        await _wait(stop, min(5.0, self.poll_interval))
        return since, False

    def _window(self, plan: Plan) -> LagWindow | None:
        if not self.lag_seconds:
            return None
        if plan.cursor is None or plan.strategy != "timestamp":
            raise ConfigError(f"pipeline {self.pipeline!r}: incremental.lag_seconds needs the timestamp strategy "
                              f"(a timestamp cursor column); this pipeline's cursor is read as "
                              f"{plan.strategy or 'a whole-table read'}")
        return LagWindow(self.lag_seconds, plan.cursor.name, [c.name for c in plan.key])

    async def _poll(self, plan: Plan, position: dict[str, Any] | None, epoch: int,
                    stamp: Any = None) -> tuple[Chunk | None, bool]:
        """The next chunk after `position` (None when there is none) and whether the poll caught up.
        A whole-table read walks pass after pass: its chunk that reaches the end says `done`. With a
        lag window, a poll that caught up reads the window below `position` next."""
        problem = plan.resume_problem(position)
        if problem is not None:
            raise ConfigError(
                f"pipeline {self.pipeline!r}: {self.partition}: {problem}. `conduitd checkpoints reset -c CONFIG "
                f"-p {self.pipeline} --partition {self.partition}` starts it over (an append pipeline then loads its "
                "rows again, an upsert absorbs them), or restore the former setting")
        window = self.window if position is not None and "cursor" in position else None
        if window is not None and window.sweep is not None:
            return await self._poll_window(window, plan, position or {}, epoch, stamp)
        reading = next_pass(position) if plan.cursor is None else position
        timings = Timings()
        with timings.stage("poll"):
            read = await self.reader.read(plan, reading, self.max_rows, self.partition)
        if read is None:
            return None, False  # nothing may be read yet: a running transaction holds the bound
        caught_up = read.count < self.max_rows
        if self.window is not None:
            self.window.note(read.rows, read.rejects)
            if caught_up and (read.last is not None or window is not None):
                self.window.start()  # the window below the new high water is read next
                if read.last is None:
                    return await self._poll_window(self.window, plan, position or {}, epoch, stamp)
                caught_up = False
        if read.last is None:
            if reading is not None and plan.cursor is None:  # an empty pass (or its end): say it is done
                done = {**reading, "done": True}
                if stamp is not None:
                    done["lease"] = stamp
                return Chunk(self.partition, position, done, read.rows, epoch=epoch, timings=timings), True
            return None, caught_up
        end = plan.position_after(read.last, reading)
        if plan.cursor is None and caught_up:
            end["done"] = True
        if stamp is not None:
            end["lease"] = stamp
        return Chunk(self.partition, position, end, read.rows, tuple(read.rejects), nbytes=read.nbytes,
                     epoch=epoch, timings=timings), caught_up

    async def _poll_window(self, window: LagWindow, plan: Plan, position: dict[str, Any], epoch: int,
                           stamp: Any) -> tuple[Chunk | None, bool]:
        """The next rows of the lag window not handed over yet, as a chunk at the high water
        `position` (it starts and ends there: the position does not move), and whether the window
        is done. Pages holding nothing new are passed over."""
        end = {**position, "lease": stamp} if stamp is not None else position
        while True:
            timings = Timings()
            with timings.stage("poll"):
                read = await self.reader.read(plan, window.after(position), self.max_rows, self.partition)
            if read is None:
                return None, False
            window.advance(read.last, read.count < self.max_rows)
            rows, rejects = window.fresh(read.rows, read.rejects)
            done = window.sweep is None
            if rows.num_rows or rejects:
                # Marked as read again: a reject the DLQ holds already (a run before this one
                # found it) is not added again.
                return Chunk(self.partition, position, end, rows, tuple(replace(r, reread=True) for r in rejects),
                             epoch=epoch, timings=timings, reread=True), done
            if done:
                return None, True


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _key_text(value: Any) -> str:
    """A key value read from the destination as text the source casts back to the column's type."""
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
