"""`LeaseKeeper`: what a replica says it holds (/status) is only what it won and still keeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conduitd.core.records import Position
from conduitd.errors import TransientError
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


class FailingBook(Book):
    """A lease table whose claims keep failing with a retriable error (the stamp's compare-and-set
    never matching, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0
        self.fifth = asyncio.Event()

    async def claim(self, partition: str, ttl: float) -> tuple[int, Position] | None:
        self.claims += 1
        if self.claims == 5:
            self.fifth.set()
        raise TransientError("the checkpoint kept moving while the lease was stamped on it")


async def test_under_once_a_lease_table_that_keeps_failing_ends_the_wait_with_its_error() -> None:
    book = FailingBook()
    keeper = LeaseKeeper(book, "p", pipeline="x", ttl=0.03, once=True, unreachable_after=0.05)
    with pytest.raises(TransientError, match="kept moving"):
        await asyncio.wait_for(keeper.acquire(asyncio.Event()), 30)
    assert book.claims >= 2 and keeper.problem is not None and "kept moving" in keeper.problem


async def test_a_daemon_keeps_trying_until_stopped() -> None:
    book = FailingBook()
    keeper = LeaseKeeper(book, "p", pipeline="x", ttl=0.03, once=False, unreachable_after=0.0)
    stop = asyncio.Event()
    seeking = asyncio.create_task(keeper.acquire(stop))
    await asyncio.wait_for(book.fifth.wait(), 30)
    assert not seeking.done()
    stop.set()
    assert await seeking is None
