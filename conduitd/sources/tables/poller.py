"""The polling loop every database-table source shares: resume after the committed position, read
chunk after chunk through a `TableReader` until caught up, then wait `poll_interval`; walk whole
tables pass after pass; reconnect with backoff when the connection is lost (readiness red,
`problem` says why; under --once for `unreachable_after` seconds, then exit code 5); start again
from the committed position on `resync`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from conduitd.core.records import Chunk, Position, Reject
from conduitd.core.timings import Timings
from conduitd.errors import ConduitError, DependencyUnreachable
from conduitd.sources.base import Checkpoints
from conduitd.sources.tables.cursor import Plan, next_pass

log = logging.getLogger(__name__)


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


class PollingSource:
    """See the module docstring."""

    def __init__(self, reader: TableReader, partition: str, *, name: str, pipeline: str, once: bool, max_rows: int,
                 poll_interval: float, unreachable_after: float) -> None:
        self.reader = reader
        self.partition = partition
        self.name = name
        self.pipeline = pipeline
        self.once = once
        self.max_rows = max_rows
        self.poll_interval = poll_interval
        self.unreachable_after = unreachable_after
        self.epoch = 0
        self._problem: str | None = None

    def lag(self) -> dict[str, dict[str, float]]:
        return {self.partition: self.reader.lag()}

    def problem(self) -> str | None:
        return self._problem

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        return None

    async def resync(self) -> bool:
        self.epoch += 1  # what was read is dropped; the next poll starts from the committed position
        return True

    async def close(self) -> None:
        await self.reader.close()

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        epoch = self.epoch
        position: dict[str, Any] | None = (await checkpoints.committed()).get(self.partition)
        plan: Plan | None = None
        connected = False
        failing_since: float | None = None
        while not stop.is_set():
            if self.epoch != epoch:  # resync: start again from what is committed
                epoch = self.epoch
                position = (await checkpoints.committed()).get(self.partition)
            try:
                if not connected:
                    await self.reader.connect()
                    connected = True
                if plan is None:
                    plan = await self.reader.plan()
                chunk, caught_up = await self._poll(plan, position, epoch)
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
            if caught_up:
                if self.once:
                    return
                await _wait(stop, self.poll_interval)

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

    async def _poll(self, plan: Plan, position: dict[str, Any] | None, epoch: int) -> tuple[Chunk | None, bool]:
        """The next chunk after `position` (None when there is none) and whether the poll caught up.
        A whole-table read walks pass after pass: its chunk that reaches the end says `done`."""
        reading = next_pass(position) if plan.cursor is None else position
        timings = Timings()
        with timings.stage("poll"):
            read = await self.reader.read(plan, reading, self.max_rows, self.partition)
        if read is None:
            return None, True  # nothing may be read yet (a running transaction holds the bound)
        caught_up = read.count < self.max_rows
        if read.last is None:
            if reading is not None and plan.cursor is None:  # an empty pass (or its end): say it is done
                done = {**reading, "done": True}
                return Chunk(self.partition, position, done, read.rows, epoch=epoch, timings=timings), True
            return None, caught_up
        end = plan.position_after(read.last, reading)
        if plan.cursor is None and caught_up:
            end["done"] = True
        return Chunk(self.partition, position, end, read.rows, tuple(read.rejects), nbytes=read.nbytes,
                     epoch=epoch, timings=timings), caught_up


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
