"""When `after_commit.dbt` runs: the supervisor's two hooks.

- Daemon mode (`start_watchers`): one task per pipeline whose `every` is a duration, in the
  supervisor's TaskGroup. It looks at the pipeline's `last_commit` (set after every commit) and
  runs dbt when something was committed since the previous dbt run and `every` has passed since
  that run started; runs never overlap. On the daemon's stop no new dbt run starts; a running one
  gets `service.drain_timeout`, then it is interrupted and killed (reported `cancelled`).
- `--once` (`after_run`): after a pipeline's run ended well, dbt runs once (whatever `every` says)
  if the run committed a batch (or `run_when_nothing_committed`); a run stopped by a signal skips
  it. With `fail_run_on_error`, a dbt outcome other than success makes the run exit 1; by default
  the exit code is the pipeline's. Bounded runs started through the API do not run dbt.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Protocol

from conduitd.config import Config
from conduitd.errors import ConduitError
from conduitd.ops.dbt import DbtRunner
from conduitd.ops.events import EventHub
from conduitd.ops.metrics import Metrics
from conduitd.runtime.slots import Slot

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """What of the supervisor (`conduitd.runtime.supervisor.Runtime`) these hooks use."""

    config: Config
    once: bool
    stop: asyncio.Event
    metrics: Metrics
    events: EventHub

    @property
    def slots(self) -> Mapping[str, Slot]: ...

_LOOK_EVERY = 0.2
_runners: weakref.WeakKeyDictionary[Runtime, dict[str, DbtRunner]] = weakref.WeakKeyDictionary()


class DbtFailed(ConduitError):
    """dbt did not succeed after a --once run whose pipeline has `fail_run_on_error` (exit 1)."""


def runner(runtime: Runtime, slot: Slot) -> DbtRunner | None:
    """The pipeline's dbt runner (one per pipeline and runtime), or None without `after_commit.dbt`."""
    settings = slot.resource.after_commit.dbt
    if settings is None:
        return None
    runners = _runners.setdefault(runtime, {})
    name = slot.resource.name
    if name not in runners:
        destination = next((d for d in runtime.config.destinations if d.name == slot.resource.destination), None)
        schema = getattr(destination, "db_schema", None)
        table = slot.resource.table_name
        runners[name] = DbtRunner(settings, name, [f"{schema}.{table}" if schema else table],
                                  metrics=runtime.metrics, events=runtime.events)
        runners[name].show(slot.pipeline.status)
    return runners[name]


async def after_run(runtime: Runtime, slot: Slot) -> bool:
    """Under --once, after the pipeline's run ended without an error: run dbt (see the module).
    True when dbt did not succeed and `fail_run_on_error` set `slot.failure` (exit 1)."""
    dbt = runner(runtime, slot)
    if dbt is None:
        return False
    status = slot.pipeline.status
    if runtime.stop.is_set():
        dbt.skip(status, "the run was stopped before its source was caught up")
        return False
    if status.batches == 0 and not dbt.settings.run_when_nothing_committed:
        dbt.skip(status, "the run committed nothing")
        return False
    outcome = await dbt.run(status, trigger="after_run", stop=runtime.stop, grace=runtime.config.service.drain_timeout)
    if outcome["outcome"] != "success" and dbt.settings.fail_run_on_error:
        slot.failure = DbtFailed(f"dbt after the run of pipeline {slot.resource.name!r}: {outcome['outcome']} "
                                 f"(exit code {outcome.get('exit_code')}); the data is committed")
        return True
    return False


def start_watchers(runtime: Runtime, tasks: asyncio.TaskGroup, runs: Sequence[asyncio.Task[None]]) -> None:
    """In daemon mode, a task per pipeline with `after_commit.dbt.every` a duration."""
    if runtime.once:
        return
    for slot in runtime.slots.values():
        dbt = runner(runtime, slot)
        if dbt is None:
            continue
        if dbt.settings.every == "after_run":
            log.info("pipeline %s: dbt runs only after --once runs (after_commit.dbt.every: after_run)",
                     slot.resource.name, extra={"pipeline": slot.resource.name})
            continue
        tasks.create_task(_watch(runtime, slot, dbt, runs), name=f"dbt {slot.resource.name}")


async def _watch(runtime: Runtime, slot: Slot, dbt: DbtRunner, runs: Sequence[asyncio.Task[None]]) -> None:
    every = dbt.settings.every
    assert not isinstance(every, str)
    loop = asyncio.get_running_loop()
    seen: float | None = None
    not_before = 0.0
    while not runtime.stop.is_set() and not all(r.done() for r in runs):
        status = slot.pipeline.status  # a restarted pipeline has a new status
        if status.dbt is None or status.dbt.get("runs") != dbt.count:
            dbt.show(status)
        committed = status.last_commit
        if committed is not None and committed != seen and loop.time() >= not_before:
            seen, not_before = committed, loop.time() + every
            await dbt.run(status, trigger="every", stop=runtime.stop, grace=runtime.config.service.drain_timeout)
            continue
        await asyncio.sleep(_LOOK_EVERY)
