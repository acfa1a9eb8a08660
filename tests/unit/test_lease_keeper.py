"""`LeaseKeeper`: what a replica says it holds (/status) is only what it won and still keeps."""

from __future__ import annotations

import asyncio
from typing import Any

from conduitd.core.records import Position
from conduitd.sources.base import Census
from conduitd.sources.lease_keeper import LeaseKeeper


class Book:
    """Leases of one partition in memory: `free` says whether a claim wins."""

    owner = "a"

    def __init__(self) -> None:
        self.free = True
        self.epoch = 0

    async def claim(self, partition: str, ttl: float) -> tuple[int, Position] | None:
        if not self.free:
            return None
        self.epoch += 1
        return self.epoch, {"lease": {"owner": self.owner, "epoch": self.epoch}}

    async def renew(self, partition: str, epoch: int, ttl: float) -> bool:
        return self.free

    async def release(self, partition: str, epoch: int) -> None:
        return None

    async def census(self, partition: str, ttl: float) -> Census:
        return Census(replicas=1, partitions=1, mine=())


async def test_a_lease_sought_again_is_not_reported_held_until_it_is_won() -> None:
    book = Book()
    keeper = LeaseKeeper(book, "p", pipeline="x", ttl=30.0, once=False)
    stop = asyncio.Event()
    held = await keeper.acquire(stop)
    assert held is not None and keeper.held is held and held.stamp == {"owner": "a", "epoch": 1}

    book.free = False  # another replica took it meanwhile (this one was stopped, say)
    seeking: asyncio.Task[Any] = asyncio.create_task(keeper.acquire(stop))
    await asyncio.sleep(0.05)
    assert keeper.held is None  # not the old lease: /status must not name this replica its owner
    book.free = True
    stop.set()
    assert await seeking is None
    await keeper.release()
