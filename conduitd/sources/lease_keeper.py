"""One partition's lease, as a source keeps it (`sources.base.Leases`): wait for it within this
replica's fair share, renew it every third of its time in a task of its own (so a full queue never
lets it lapse), say when it is lost or more than the share, and give it back.

Database tables and Kinesis shards both read through this: winning a lease stamps the partition's
committed position with the new epoch, every position the source writes under it carries the
stamp (`Held.stamp`), and a stalled former owner's late commit is refused by the checkpoint's
compare-and-set (see `runtime.leases`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conduitd.errors import ConduitError
from conduitd.sources.base import Census, Leases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """A lease this replica won."""

    leases: Leases
    epoch: int
    stamp: Any
    """The `lease` value of the positions written under this lease."""
    position: dict[str, Any]
    """The committed position when it was won, stamped: where reading starts."""


class LeaseKeeper:
    """See the module docstring. `count`, when given, is how many partitions the group has as the
    source sees them (a source whose finished partitions keep their lease rows, like Kinesis
    shards read to their end, counts only the live ones); by default the census counts rows.
    `on_lost` runs the moment the lease is lost (before `lost` is set): a source drops what it read
    under it there (a new epoch), before the pipeline can commit any of it."""

    def __init__(self, leases: Leases, partition: str, *, pipeline: str, ttl: float, once: bool,
                 count: Callable[[], int] | None = None, on_lost: Callable[[], None] | None = None,
                 unreachable_after: float = 30.0) -> None:
        self.leases = leases
        self.unreachable_after = unreachable_after
        """Under --once, how long the lease table may keep failing before `acquire` raises."""
        self.partition = partition
        self.pipeline = pipeline
        self.ttl = ttl
        self.once = once
        self._count = count
        self._on_lost = on_lost
        self.name = f"{pipeline}/{partition}"
        self.held: Held | None = None
        self.problem: str | None = None
        """Why the lease table cannot be used right now (it is retried), or None."""
        self.lost = asyncio.Event()
        """Set when the held lease was lost or handed over (then `held` is None)."""
        self._task: asyncio.Task[None] | None = None

    def _share(self, census: Census) -> int:
        if self._count is None:
            return census.share
        return max(1, -(-max(1, self._count()) // max(1, census.replicas)))

    async def acquire(self, stop: asyncio.Event) -> Held | None:
        """Wait for the lease within the fair share and start keeping it; None when stopped (or,
        under --once, when another replica holds it). Until it is won again, this replica does not
        say it holds the lease (what it held before may be another's now)."""
        await self.stop_keeping()
        self.held = None
        failing_since: float | None = None
        while not stop.is_set():
            try:
                census = await self.leases.census(self.partition, self.ttl)
                if self.once or self.name in census.mine or len(census.mine) < self._share(census):
                    won = await self.leases.claim(self.partition, self.ttl)
                    if won is not None:
                        self.problem = None
                        position = dict(won[1])
                        self.held = Held(self.leases, won[0], position["lease"], position)
                        self.lost = asyncio.Event()
                        self._task = asyncio.create_task(self._keep(self.held), name=f"lease {self.name}")
                        return self.held
                if self.once:
                    log.info("pipeline %s: another replica holds the lease on %s: nothing read", self.pipeline,
                             self.partition, extra={"pipeline": self.pipeline})
                    return None
            except ConduitError as exc:
                if not exc.retriable:
                    raise
                self.problem = f"leases: {exc}"
                log.warning("pipeline %s: %s: %s; trying again", self.pipeline, self.partition, self.problem,
                            extra={"pipeline": self.pipeline})
                failing_since = failing_since or time.monotonic()
                if self.once and time.monotonic() - failing_since > self.unreachable_after:
                    raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl / 3)
        return None

    async def stop_keeping(self) -> None:
        """Stop renewing (the lease stays held until `release` or its expiry)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def release(self) -> None:
        """Give the lease back (after the last commit under it: the next owner starts right after)."""
        await self.stop_keeping()
        held, self.held = self.held, None
        if held is not None:
            with contextlib.suppress(ConduitError):
                await held.leases.release(self.partition, held.epoch)

    async def _keep(self, held: Held) -> None:
        """Renew every third of the lease's time; give it up when it is lost, or when this replica
        holds more than its fair share (the last of its leases by name goes)."""
        ttl = self.ttl
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await held.leases.renew(self.partition, held.epoch, ttl):
                    break
                renewed = time.monotonic()
                census = await held.leases.census(self.partition, ttl)
                share = self._share(census)
                if not self.once and len(census.mine) > share and census.mine[-1] == self.name:
                    await held.leases.release(self.partition, held.epoch)
                    log.info("pipeline %s: %d replicas share %d partitions: leaving %s to another", self.pipeline,
                             census.replicas, self._count() if self._count else census.partitions,
                             self.partition, extra={"pipeline": self.pipeline})
                    break
            except ConduitError:
                if time.monotonic() - renewed > ttl:
                    break  # not renewed for a whole lease: another replica may hold it now
        self.held = None
        self._task = None
        if self._on_lost is not None:
            self._on_lost()
        self.lost.set()
