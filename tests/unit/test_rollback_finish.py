"""`finish`: a rollback runs to its end however many cancellations arrive, which are delivered after."""

from __future__ import annotations

import asyncio

import pytest

from conduitd.destinations.rollback import finish


async def test_cancellations_during_the_rollback_wait_for_it_and_are_raised_after() -> None:
    started, release, steps = asyncio.Event(), asyncio.Event(), []

    async def rollback() -> None:
        started.set()
        await release.wait()
        steps.append("rolled back")

    async def failing_commit() -> None:
        try:
            raise RuntimeError("the step failed")
        except RuntimeError:
            await finish(rollback())
            steps.append("after the rollback")  # not reached: the cancellation comes after it

    task = asyncio.create_task(failing_commit())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # a second one (a task group, a timeout) while the first waits
    await asyncio.sleep(0)
    assert not task.done() and steps == []
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["rolled back"]


async def test_without_cancellation_the_rollbacks_own_error_is_raised() -> None:
    async def rollback() -> None:
        raise OSError("connection gone")

    with pytest.raises(OSError, match="connection gone"):
        await finish(rollback())
