"""The runtime's alert task: reads the event hub and the statuses, feeds the rules, hands the
alerts to the delivery workers. It only reads what the pipelines publish (the hub drops events
for a subscriber that falls behind, never blocks the publisher) and never touches a commit.

It runs while any pipeline task runs. When it ends or is cancelled (a pipeline failed without
the control plane, so the process is ending), it reads the events still queued and gives the
last alerts `FLUSH_SECONDS` to go out before it stops its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from conduitd.alertsettings import AlertsConfig
from conduitd.config import Config
from conduitd.ops.alerts.delivery import Delivery
from conduitd.ops.alerts.rules import Rules
from conduitd.ops.events import EventHub
from conduitd.ops.metrics import Metrics, PipelineStatus

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0
"""How long alerts still queued at shutdown may take to go out."""


class _Listening(Protocol):
    @property
    def port(self) -> int: ...


class _WithStatus(Protocol):
    @property
    def status(self) -> PipelineStatus: ...


class AlertedRuntime(Protocol):
    """What the alert task needs of the runtime (`conduitd.runtime.supervisor.Runtime`)."""

    @property
    def config(self) -> Config: ...

    @property
    def events(self) -> EventHub: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def api(self) -> _Listening | None: ...

    @property
    def pipelines(self) -> Sequence[_WithStatus]: ...

    def statuses(self) -> list[PipelineStatus]: ...


async def watch(runtime: AlertedRuntime, runs: Sequence[asyncio.Task[None]]) -> None:
    """Alert on the runtime's pipelines under `runtime.config.alerts` until every task in `runs`
    is done (see the module docstring); outcomes are counted in `metrics.alert_deliveries`."""
    settings = runtime.config.alerts
    if settings is None:
        return
    rules = Rules(settings, {r.name: r.project for r in runtime.config.resources})
    delivery = Delivery(settings, runtime.metrics.alert_deliveries, lambda: ui_base(runtime, settings))
    with runtime.events.subscription() as events:
        workers = asyncio.ensure_future(delivery.run())
        try:
            await _observe(runtime, rules, delivery, events, runs)
        finally:
            _drain(runtime, rules, delivery, events)
            if not await delivery.flush(FLUSH_SECONDS):
                log.warning("alerts: some alerts were still unsent at shutdown")
            workers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await workers


def ui_base(runtime: AlertedRuntime, settings: AlertsConfig) -> str | None:
    """`alerts.ui_url`, else the address the control plane listens on, else None."""
    if settings.ui_url is not None:
        return settings.ui_url
    api_settings, api = runtime.config.service.api, runtime.api
    if api_settings is None or api is None:
        return None
    host = api_settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{api.port}"


async def _observe(runtime: AlertedRuntime, rules: Rules, delivery: Delivery,
                   events: asyncio.Queue[dict[str, Any]], runs: Sequence[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()
    interval = rules.settings.check_interval
    next_check = loop.time()
    ended = asyncio.ensure_future(asyncio.wait(runs))  # wakes the loop as the last pipeline ends
    getter: asyncio.Future[dict[str, Any]] | None = None
    try:
        while not all(run.done() for run in runs):
            if loop.time() >= next_check:
                for alert in rules.on_statuses(runtime.statuses(), time.time()):
                    delivery.submit(alert)
                next_check = loop.time() + interval
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait((getter, ended), timeout=max(0.0, next_check - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
            taken, getter = getter, None
            if taken.done():
                _one(runtime, rules, delivery, taken.result())
            else:
                taken.cancel()  # an event not yet taken stays queued
    finally:
        ended.cancel()
        if getter is not None:  # cancelled while waiting: an event taken meanwhile is still handled
            if getter.done() and not getter.cancelled():
                _one(runtime, rules, delivery, getter.result())
            getter.cancel()


def _drain(runtime: AlertedRuntime, rules: Rules, delivery: Delivery, events: asyncio.Queue[dict[str, Any]]) -> None:
    while not events.empty():
        _one(runtime, rules, delivery, events.get_nowait())


def _one(runtime: AlertedRuntime, rules: Rules, delivery: Delivery, event: dict[str, Any]) -> None:
    if event.get("kind") not in ("state", "batch", "dbt"):
        return
    status = next((s for s in _statuses(runtime) if s.name == event.get("pipeline")), None)
    for alert in rules.on_event(event, time.time(), status):
        delivery.submit(alert)


def _statuses(runtime: AlertedRuntime) -> list[PipelineStatus]:
    # Without refreshing the lag (statuses() does): only the error text is wanted here.
    return [p.status for p in runtime.pipelines]
