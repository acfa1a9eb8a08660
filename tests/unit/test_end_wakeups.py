"""The runtime's watchers end as the last pipeline ends, woken by it, not at their next poll: a
`--once` run waited up to 0.1 s (the drain-deadline watcher), 0.5 s (alerts) after its last commit.

Counted in event-loop turns, not seconds: a watcher on a timer is still waiting after a few
turns however fast the machine is; one woken by the runs' end is done."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from conduitd.ops.alerts.watch import _observe
from conduitd.runtime.supervisor import Runtime

_TURNS = 20


async def _turns(task: asyncio.Task[Any]) -> bool:
    for _ in range(_TURNS):
        if task.done():
            return True
        await asyncio.sleep(0)
    return task.done()


async def _pipeline(finish: asyncio.Event) -> None:
    await finish.wait()


async def test_the_drain_deadline_watcher_ends_with_the_last_run() -> None:
    finish = asyncio.Event()
    runs = [asyncio.create_task(_pipeline(finish))]
    runtime = SimpleNamespace(stop=asyncio.Event(), drain_expired=False,
                              config=SimpleNamespace(service=SimpleNamespace(drain_timeout=30.0)))
    watcher = asyncio.create_task(Runtime._enforce_drain_deadline(runtime, runs))  # type: ignore[arg-type]
    assert not await _turns(watcher)  # the run goes on: so does the watcher
    finish.set()
    assert await _turns(watcher)
    assert not runtime.drain_expired


async def test_after_a_stop_the_deadline_still_cancels_runs_that_do_not_drain() -> None:
    runs = [asyncio.create_task(_pipeline(asyncio.Event()))]  # never ends by itself
    runtime = SimpleNamespace(stop=asyncio.Event(), drain_expired=False,
                              config=SimpleNamespace(service=SimpleNamespace(drain_timeout=0.05)))
    watcher = asyncio.create_task(Runtime._enforce_drain_deadline(runtime, runs))  # type: ignore[arg-type]
    runtime.stop.set()
    await asyncio.wait_for(watcher, 30)
    assert runtime.drain_expired
    await asyncio.wait(runs)
    assert runs[0].cancelled()


class _Rules:
    settings = SimpleNamespace(check_interval=3600.0)

    def on_statuses(self, statuses: object, now: float) -> list[object]:
        return []


class _Delivery:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def submit(self, alert: object) -> None:
        self.sent.append(alert)


async def test_the_alerts_watcher_ends_with_the_last_run_and_keeps_an_unread_event() -> None:
    finish = asyncio.Event()
    runs = [asyncio.create_task(_pipeline(finish))]
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    runtime = SimpleNamespace(statuses=list)
    watcher = asyncio.create_task(_observe(runtime, _Rules(), _Delivery(), events, runs))  # type: ignore[arg-type]
    assert not await _turns(watcher)
    finish.set()
    assert await _turns(watcher)
    events.put_nowait({"kind": "state"})
    assert events.qsize() == 1  # no getter left behind to take it: the final drain sees it
