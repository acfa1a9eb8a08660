"""The supervisor: owns every pipeline task, the health server and the control plane, and turns
signals into a drain.

First SIGTERM/SIGINT: stop reading, commit what is queued within `service.drain_timeout`, exit 0
(1 if the deadline passed; the uncommitted remainder is read again next time). A second signal
ends the process at once (exit 1); nothing uncommitted was acknowledged, so nothing is lost.

Without the control plane a failing pipeline stops the others and its error propagates (inside
an ExceptionGroup) for the CLI to turn into an exit code. With `service.api` in daemon mode a
failed pipeline stays `failed` (its error in /status) while the others run on, until an operator
restarts it; the process then exits with the failure's code when it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conduitd.config import Config, PipelineConfig
from conduitd.errors import ExitCode, NotNow, describe, exit_code_of
from conduitd.ops import otel_metrics
from conduitd.ops.events import EventHub
from conduitd.ops.metrics import Metrics, PipelineStatus
from conduitd.ops.notify import Notifier
from conduitd.runtime.after_commit import after_run, start_watchers
from conduitd.runtime.pipeline import Pipeline
from conduitd.runtime.runs import RunRecord
from conduitd.runtime.slots import Slot

if TYPE_CHECKING:
    from conduitd.api.server import ApiServer
    from conduitd.ops.health import HealthServer

log = logging.getLogger(__name__)


class Runtime:
    """Runs the selected pipelines of a config until done (--once) or stopped."""

    def __init__(self, config: Config, only: Sequence[str] = (), *, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.metrics = Metrics()
        self.events = EventHub()
        chosen = [r for r in config.resources if not only or r.name in only]
        self.slots = {r.name: Slot(r, self._pipeline(r, once=once)) for r in chosen}
        self.contain = config.service.api is not None and not once
        self.runs: dict[str, RunRecord] = {}
        self.stop = asyncio.Event()
        self.health: HealthServer | None = None
        self.api: ApiServer | None = None
        self.drain_expired = False
        self.notifier = Notifier()
        self._signals = 0
        self._tasks: asyncio.TaskGroup | None = None

    def _pipeline(self, resource: PipelineConfig, *, once: bool) -> Pipeline:
        return Pipeline(self.config, resource, self.metrics, once=once, events=self.events)

    @property
    def pipelines(self) -> list[Pipeline]:
        return [slot.pipeline for slot in self.slots.values()]

    def statuses(self) -> list[PipelineStatus]:
        """Live status of every pipeline (lag and source health refreshed now)."""
        for pipeline in self.pipelines:
            pipeline.refresh_lag()
        return [p.status for p in self.pipelines]

    async def run(self) -> ExitCode:
        """Run everything; return the exit code (see the module docstring)."""
        self._install_signal_handlers()
        service = self.config.service
        if service.health_port is not None:
            from conduitd.ops.health import HealthServer  # aiohttp, only for a health port

            self.health = HealthServer(service.health_host, service.health_port, self.metrics, self.statuses)
            await self.health.start()
        otlp = otel_metrics.start_from_environment(self.metrics.registry)  # the same registry as /metrics
        try:
            if service.api is not None:
                from conduitd.api.server import ApiServer  # the ASGI stack, only with the API on

                self.api = ApiServer(self, service.api)
                await self.api.start()
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                runs = [tasks.create_task(self._supervise(slot), name=f"pipeline {name}")
                        for name, slot in self.slots.items()]
                tasks.create_task(self._enforce_drain_deadline(runs))
                tasks.create_task(self._propagate_stop(runs))
                start_watchers(self, tasks, runs)  # after_commit.dbt in daemon mode
                if self.config.alerts is not None:
                    from conduitd.ops.alerts.watch import watch  # httpx, only with alerts on

                    tasks.create_task(watch(self, runs), name="alerts")  # reads events; never in a commit's way
                if self.notifier.enabled:
                    tasks.create_task(self._notify_systemd(runs))
        finally:
            self._tasks = None
            if self.api is not None:
                await self.api.stop()
            if self.health is not None:
                await self.health.stop()
            self.notifier.close()
            if otlp is not None:
                await asyncio.to_thread(otlp.stop)  # the final values, also of a --once run
        failed = [slot.failure for slot in self.slots.values() if slot.failure is not None]
        if failed:
            return ExitCode(exit_code_of(failed[0]))
        return ExitCode.RUNTIME if self.drain_expired else ExitCode.OK

    # -- what the control plane asks ----------------------------------------------------------

    def slot(self, name: str) -> Slot | None:
        return self.slots.get(name)

    def pause(self, name: str) -> Pipeline:
        slot = self._slot(name)
        if slot.pipeline.status.state in ("failed", "done", "stopped"):
            raise NotNow(f"pipeline {name!r} is {slot.pipeline.status.state}: there is nothing to pause")
        slot.pipeline.pause()
        return slot.pipeline

    def resume(self, name: str) -> Pipeline:
        """Read on; after its checkpoints moved while paused, start it again from them."""
        slot = self._slot(name)
        if slot.pipeline.status.state == "failed":
            raise NotNow(f"pipeline {name!r} failed: restart it instead")
        if slot.moved:
            self._restart(slot)
        else:
            slot.pipeline.resume()
        return slot.pipeline

    def restart(self, name: str) -> None:
        """Start a failed (or paused) pipeline again, from its committed positions."""
        slot = self._slot(name)
        if slot.pipeline.status.state not in ("failed", "paused", "pausing"):
            raise NotNow(f"pipeline {name!r} is {slot.pipeline.status.state}: only a failed or paused pipeline "
                          "is restarted")
        self._restart(slot)

    def moved(self, name: str) -> None:
        """Checkpoints of a paused pipeline were changed: resuming starts it from them."""
        slot = self.slots.get(name)
        if slot is not None:
            slot.moved = True

    def idle(self, name: str) -> bool:
        """Whether nothing of this daemon reads the pipeline now: not selected, failed, stopped,
        or paused with everything committed (its checkpoints may then change underneath it)."""
        slot = self.slots.get(name)
        if slot is None:
            return True
        pipeline = slot.pipeline
        return pipeline.status.state in ("failed", "stopped", "done") or (pipeline.paused and pipeline.drained)

    def start_run(self, resource: PipelineConfig) -> RunRecord:
        """A bounded run of the pipeline (`--once` semantics), while the daemon's own reader of
        it is idle; its result is polled from `runs`."""
        if self._tasks is None or self.stop.is_set():
            raise NotNow("the daemon is not running pipelines now")
        if any(r.pipeline == resource.name and r.state == "running" for r in self.runs.values()):
            raise NotNow(f"a bounded run of {resource.name!r} is running already")
        if not self.idle(resource.name):
            raise NotNow(f"pipeline {resource.name!r} is running in this daemon: pause it first (a bounded run "
                          "beside it would compete for the same positions)")
        record = RunRecord(resource.name)
        pipeline = self._pipeline(resource, once=True)
        record.status = pipeline.status
        self.runs[record.id] = record
        self.moved(resource.name)
        self._tasks.create_task(self._bounded(pipeline, record), name=f"run {record.id}")
        self.events.publish("run", resource.name, run=record.id, state="running")
        return record

    def _slot(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise NotNow(f"pipeline {name!r} is not run by this daemon (not selected)")
        return slot

    def _restart(self, slot: Slot) -> None:
        slot.restart.set()
        slot.stop.set()  # a paused or running pipeline drains first; a failed one is already over

    async def _bounded(self, pipeline: Pipeline, record: RunRecord) -> None:
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(self._forward(stop))
        try:
            await pipeline.run(stop)
            record.state, record.exit_code = "succeeded", int(ExitCode.OK)
        except Exception as exc:  # noqa: BLE001 - any failure is the run's result, for the caller to poll
            record.state, record.exit_code, record.error = "failed", exit_code_of(exc), describe(exc)
            log.error("bounded run %s of %s failed: %s", record.id, record.pipeline, record.error,
                      extra={"pipeline": record.pipeline})
        finally:
            watcher.cancel()
            record.ended = time.time()
            self.events.publish("run", record.pipeline, run=record.id, state=record.state,
                                exit_code=record.exit_code)

    async def _forward(self, stop: asyncio.Event) -> None:
        await self.stop.wait()
        stop.set()

    # -- tasks ---------------------------------------------------------------------------------

    async def _supervise(self, slot: Slot) -> None:
        while True:
            try:
                await slot.pipeline.run(slot.stop)
            except Exception as exc:
                if not self.contain:
                    raise
                slot.failure = exc
                log.error("pipeline %s failed: %s; it stays failed until restarted (POST /api/v1/pipelines/%s/"
                          "restart), the others run on", slot.resource.name, describe(exc), slot.resource.name,
                          extra={"pipeline": slot.resource.name})
            if self.once and slot.failure is None and await after_run(self, slot):
                return  # after_commit.dbt failed with fail_run_on_error: exit 1, the data stays committed
            if self.stop.is_set():
                return
            if not slot.restart.is_set():
                if slot.failure is None:
                    return  # the source ended by itself
                await _first(slot.restart.wait(), self.stop.wait())
                if self.stop.is_set():
                    return
            slot.restart.clear()
            slot.failure, slot.moved, slot.stop = None, False, asyncio.Event()
            slot.pipeline = self._pipeline(slot.resource, once=self.once)
            log.info("pipeline %s restarted", slot.resource.name, extra={"pipeline": slot.resource.name})

    async def _propagate_stop(self, runs: Sequence[asyncio.Task[None]]) -> None:
        """The daemon's stop is every pipeline's stop."""
        await _first(self.stop.wait(), asyncio.wait(runs))
        for slot in self.slots.values():
            slot.stop.set()

    async def _enforce_drain_deadline(self, runs: Sequence[asyncio.Task[None]]) -> None:
        """Once a stop is requested, give the pipelines `drain_timeout` to commit, then cancel them
        (their open transactions roll back; that work is read again on restart). Woken by the stop
        or by the last pipeline's end, not by polling: a `--once` run exits as its work ends."""
        await _first(self.stop.wait(), asyncio.wait(runs))
        if all(r.done() for r in runs):
            return
        _, pending = await asyncio.wait(runs, timeout=self.config.service.drain_timeout)
        if pending:
            self.drain_expired = True
            log.error("drain deadline of %.0fs passed: stopping without committing the rest "
                      "(it will be read again on restart)", self.config.service.drain_timeout)
            for run in pending:
                run.cancel()

    async def _notify_systemd(self, runs: Sequence[asyncio.Task[None]]) -> None:
        """READY=1 once every pipeline has connected, STATUS= on state changes, and watchdog
        pings from this loop (see `conduitd.ops.notify`)."""
        watchdog = self.notifier.watchdog_seconds
        interval = min(0.5, watchdog / 2) if watchdog else 0.5
        told_ready = False
        while not all(r.done() for r in runs):
            statuses = self.statuses()
            self.notifier.status("; ".join(f"{s.name}: {s.state}" for s in statuses))
            if not told_ready and all(s.ready or s.state in ("done", "failed", "paused") for s in statuses):
                self.notifier.ready()
                told_ready = True
            if watchdog:
                self.notifier.watchdog()
            await _first(asyncio.sleep(interval), asyncio.wait(runs))  # woken early by the end

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.error("second %s: exiting at once; uncommitted work will be read again",
                      signal.Signals(signum).name)
            os._exit(ExitCode.RUNTIME)
        log.info("%s: draining (stop reading, commit what is queued, exit)", signal.Signals(signum).name)
        self.notifier.stopping()
        self.stop.set()


async def _first(*waits: object) -> None:
    """Return when the first of the awaitables is done; cancel the others."""
    futures = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()
