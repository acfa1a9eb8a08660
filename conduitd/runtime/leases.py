"""A pipeline's side of partition leases (`conduitd.sources.base.Leases`), over the destination's
lease table (`Capabilities.leases`). Winning a lease stamps the partition's committed position
with `{"lease": {"owner", "epoch"}}` by compare-and-set in a destination transaction: every batch
of the previous owner starts at the old stamp, so its late commit is refused inside its own
transaction (CheckpointConflict) and it reads again from the checkpoint, never duplicating."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from conduitd.core.records import Position
from conduitd.destinations.base import Destination
from conduitd.errors import ConfigError, TransientError
from conduitd.sources.base import Census

T = TypeVar("T")
Run = Callable[[Callable[[Destination], Awaitable[T]]], Awaitable[T]]
_STAMP_TRIES = 5


def replica_id(configured: str | None) -> str:
    """This replica's name: `service.replica_id`, else $CONDUITD_REPLICA_ID, else the host name
    (a Kubernetes pod's name). Two replicas must not share one: they would take each other's leases."""
    return configured or os.environ.get("CONDUITD_REPLICA_ID") or socket.gethostname()


def stamp(position: Position, owner: str, epoch: int) -> dict[str, Any]:
    if position is not None and not isinstance(position, dict):
        raise ConfigError(f"a leased partition's position must be a mapping, not {type(position).__name__}")
    return {**(position or {}), "lease": {"owner": owner, "epoch": epoch}}


class PipelineLeases:
    """See the module docstring. `run` calls the destination as the pipeline does (one operation at
    a time with its commits, reconnecting after a lost connection)."""

    def __init__(self, run: Run[Any], pipeline: str, group: str, owner: str) -> None:
        self._run = run
        self.pipeline = pipeline
        self.group = group
        self.owner = owner

    def _book(self, destination: Destination) -> Any:
        leases = getattr(destination, "leases", None)
        if leases is None:
            raise ConfigError("the destination keeps no leases (Capabilities.leases)")
        return leases()

    async def _ensure_table(self, destination: Destination) -> Any:
        book = self._book(destination)
        await book.create_table()
        return book

    async def claim(self, partition: str, ttl: float) -> tuple[int, Position] | None:
        async def take(d: Destination) -> int | None:
            book = await self._ensure_table(d)
            result: int | None = await book.claim(self.pipeline, partition, self.group, self.owner, ttl)
            return result

        epoch = await self._run(take)
        if epoch is None:
            return None
        for _ in range(_STAMP_TRIES):
            stored = (await self._run(lambda d: d.load_checkpoints(self.pipeline))).get(partition)
            stamped = stamp(stored, self.owner, epoch)

            async def swap(d: Destination, stored: Position = stored, stamped: Position = stamped) -> bool:
                async with d.transaction() as tx:
                    return await tx.compare_and_set(self.pipeline, partition, stored, stamped)

            if await self._run(swap):
                return epoch, stamped
        raise TransientError(f"pipeline {self.pipeline!r}: partition {partition!r}: the checkpoint kept moving "
                             "while the lease was stamped on it")

    async def renew(self, partition: str, epoch: int, ttl: float) -> bool:
        async def extend(d: Destination) -> bool:
            result: bool = await self._book(d).renew(self.pipeline, partition, self.owner, epoch, ttl)
            return result

        renewed: bool = await self._run(extend)
        return renewed

    async def release(self, partition: str, epoch: int) -> None:
        async def let_go(d: Destination) -> None:
            await self._book(d).release(self.pipeline, partition, self.owner, epoch)

        await self._run(let_go)

    async def census(self, partition: str, ttl: float) -> Census:
        async def count(d: Destination) -> Census:
            book = await self._ensure_table(d)
            await book.heartbeat(self.group, self.owner, ttl)
            rows = await book.census(self.group)
            leases = [r for r in rows if r.kind == "lease"]
            names = {(r.pipeline, r.partition) for r in leases} | {(self.pipeline, partition)}
            return Census(replicas=sum(1 for r in rows if r.kind == "replica" and r.live),
                          partitions=len(names),
                          mine=tuple(sorted(f"{r.pipeline}/{r.partition}" for r in leases
                                            if r.live and r.owner == self.owner)))

        found: Census = await self._run(count)
        return found
