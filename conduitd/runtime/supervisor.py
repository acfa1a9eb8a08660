"""The supervisor: owns every pipeline task and the health server, turns signals into a drain.

First SIGTERM/SIGINT: stop reading, commit what is queued within `service.drain_timeout`, exit 0
(1 if the deadline passed; the uncommitted remainder is read again next time). A second signal
ends the process at once (exit 1); nothing uncommitted was acknowledged, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conduitd.config import Config
from conduitd.errors import ExitCode
from conduitd.ops.metrics import Metrics, PipelineStatus
from conduitd.ops.notify import Notifier
from conduitd.runtime.pipeline import Pipeline

if TYPE_CHECKING:
    from conduitd.ops.health import HealthServer

log = logging.getLogger(__name__)


class Runtime:
    """Runs the selected pipelines of a config until done (--once) or stopped."""

    def __init__(self, config: Config, only: Sequence[str] = (), *, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.metrics = Metrics()
        chosen = [r for r in config.resources if not only or r.name in only]
        self.pipelines = [Pipeline(config, r, self.metrics, once=once) for r in chosen]
        self.stop = asyncio.Event()
        self.health: HealthServer | None = None
        self.drain_expired = False
        self.notifier = Notifier()
        self._signals = 0

    def statuses(self) -> list[PipelineStatus]:
        """Live status of every pipeline (lag and source health refreshed now)."""
        for pipeline in self.pipelines:
            pipeline.refresh_lag()
        return [p.status for p in self.pipelines]

    async def run(self) -> ExitCode:
        """Run everything; return the exit code. A failing pipeline stops the others and its
        error propagates (inside an ExceptionGroup) for the CLI to turn into an exit code."""
        self._install_signal_handlers()
        service = self.config.service
        if service.health_port is not None:
            from conduitd.ops.health import HealthServer  # aiohttp, only for a health port

            self.health = HealthServer(service.health_host, service.health_port, self.metrics, self.statuses)
            await self.health.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                runs = [tasks.create_task(p.run(self.stop), name=f"pipeline {p.pipeline.name}")
                        for p in self.pipelines]
                tasks.create_task(self._enforce_drain_deadline(runs))
                if self.notifier.enabled:
                    tasks.create_task(self._notify_systemd(runs))
        finally:
            if self.health is not None:
                await self.health.stop()
            self.notifier.close()
        return ExitCode.RUNTIME if self.drain_expired else ExitCode.OK

    async def _enforce_drain_deadline(self, runs: Sequence[asyncio.Task[None]]) -> None:
        """Once a stop is requested, give the pipelines `drain_timeout` to commit, then cancel them
        (their open transactions roll back; that work is read again on restart)."""
        while not all(r.done() for r in runs):
            if self.stop.is_set():
                break
            await asyncio.sleep(0.1)
        else:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.service.drain_timeout
        while not all(r.done() for r in runs):
            if loop.time() > deadline:
                self.drain_expired = True
                log.error("drain deadline of %.0fs passed: stopping without committing the rest "
                          "(it will be read again on restart)", self.config.service.drain_timeout)
                for run in runs:
                    run.cancel()
                return
            await asyncio.sleep(0.05)

    async def _notify_systemd(self, runs: Sequence[asyncio.Task[None]]) -> None:
        """READY=1 once every pipeline has connected, STATUS= on state changes, and watchdog
        pings from this loop (see `conduitd.ops.notify`)."""
        watchdog = self.notifier.watchdog_seconds
        interval = min(0.5, watchdog / 2) if watchdog else 0.5
        told_ready = False
        while not all(r.done() for r in runs):
            statuses = self.statuses()
            self.notifier.status("; ".join(f"{s.name}: {s.state}" for s in statuses))
            if not told_ready and all(s.ready or s.state == "done" for s in statuses):
                self.notifier.ready()
                told_ready = True
            if watchdog:
                self.notifier.watchdog()
            await asyncio.sleep(interval)

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
