"""Delivery of alerts to the sinks, off the pipelines' path.

`Delivery.submit` never blocks and never raises: the alert joins each sink's bounded queue (the
oldest waiting alert is dropped, and counted, when it is full). One worker task per sink sends
them in order, at most `max_per_minute` a minute, each with up to `retries` further attempts on a
connection error, a timeout, 429 or 5xx, pausing `retry_wait` doubling up to `retry_max_wait`, or
longer when the answer's `Retry-After` asks for it (never longer than `retry_max_wait`).
Outcomes are counted in `conduitd_alert_deliveries{sink, outcome}`; a failure is logged with the
sink's name and the reason, never its URL or secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from conduitd.alertsettings import AlertsConfig, SlackSink, WebhookSink
from conduitd.core.redact import redact
from conduitd.ops.alerts.envelope import sign, slack_body, webhook_body
from conduitd.ops.alerts.pacing import TokenBucket
from conduitd.ops.alerts.rules import Alert
from conduitd.ops.logs import quiet_url_loggers
from conduitd.retryafter import retry_after

log = logging.getLogger(__name__)


class OutcomeCounter(Protocol):
    """`Metrics.alert_deliveries` (a prometheus Counter with labels sink and outcome)."""

    def labels(self, sink: str, outcome: str) -> _Incrementable: ...


class _Incrementable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Refused(Exception):
    """The receiver answered with a status that a retry will not change (4xx other than 429)."""


class Delivery:
    """The sinks' queues and workers. `run()` is the workers (until cancelled); `flush()` waits
    for the queues to empty."""

    def __init__(self, settings: AlertsConfig, counter: OutcomeCounter, ui_base: Callable[[], str | None],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.counter = counter
        self.ui_base = ui_base
        self._transport = transport
        self.queues: dict[str, asyncio.Queue[Alert]] = {s.name: asyncio.Queue() for s in settings.sinks}
        self._busy = {s.name: False for s in settings.sinks}

    def submit(self, alert: Alert) -> None:
        """Queue `alert` for every sink; never blocks."""
        for sink in self.settings.sinks:
            queue = self.queues[sink.name]
            if queue.qsize() >= self.settings.queue_size:
                dropped = queue.get_nowait()
                self.counter.labels(sink.name, "dropped").inc()
                log.warning("alert sink %s: queue full, dropped the %s alert of %s", sink.name, dropped.kind,
                            dropped.pipeline)
            queue.put_nowait(alert)

    async def run(self) -> None:
        """The workers, one per sink, until cancelled."""
        quiet_url_loggers()
        async with httpx.AsyncClient(transport=self._transport, follow_redirects=False) as client, \
                asyncio.TaskGroup() as tasks:
            for sink in self.settings.sinks:
                tasks.create_task(self._work(client, sink), name=f"alert sink {sink.name}")

    def idle(self) -> bool:
        """Whether nothing waits or is being sent."""
        return all(q.empty() for q in self.queues.values()) and not any(self._busy.values())

    async def flush(self, within: float) -> bool:
        """Wait until every queue is empty and nothing is being sent, at most `within` seconds."""
        deadline = time.monotonic() + within
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _work(self, client: httpx.AsyncClient, sink: WebhookSink | SlackSink) -> None:
        bucket = TokenBucket(self.settings.max_per_minute, time.monotonic())
        queue = self.queues[sink.name]
        while True:
            alert = await queue.get()
            self._busy[sink.name] = True
            try:
                pause = bucket.wait(time.monotonic())
                while pause > 0:  # the rate limit: wait for the bucket to refill
                    await asyncio.sleep(pause)
                    pause = bucket.wait(time.monotonic())
                outcome = await self._deliver(client, sink, alert)
                self.counter.labels(sink.name, outcome).inc()
            finally:
                self._busy[sink.name] = False

    async def _deliver(self, client: httpx.AsyncClient, sink: WebhookSink | SlackSink, alert: Alert) -> str:
        """Send with retries; `sent` or `failed` (logged)."""
        render = slack_body if isinstance(sink, SlackSink) else webhook_body
        body = render(alert, self.ui_base())
        wait = self.settings.retry_wait
        for attempt in range(self.settings.retries + 1):
            try:
                await self._post(client, sink, body)
                return "sent"
            except _Refused as exc:
                reason = str(exc)
                break
            except (httpx.HTTPError, OSError) as exc:  # network, timeout, 429/5xx: worth another try
                reason = _reason(exc)
                asked = retry_after(exc.response.headers.get("retry-after")) \
                    if isinstance(exc, httpx.HTTPStatusError) else None
            if attempt < self.settings.retries:
                pause = wait if asked is None else max(wait, min(asked, self.settings.retry_max_wait))
                log.info("alert sink %s: attempt %d failed (%s), retrying in %.1fs", sink.name, attempt + 1,
                         reason, pause)
                await asyncio.sleep(pause)
                wait = min(wait * 2, self.settings.retry_max_wait)
        log.warning("alert sink %s: could not deliver the %s %s alert of %s: %s", sink.name, alert.kind,
                    alert.status, alert.pipeline, reason, extra={"pipeline": alert.pipeline})
        return "failed"

    async def _post(self, client: httpx.AsyncClient, sink: WebhookSink | SlackSink, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "conduitd-alerts"}
        if isinstance(sink, WebhookSink) and sink.secret is not None:
            headers |= sign(body, sink.secret.get_secret_value(), int(time.time()))
        answer = await client.post(sink.url.get_secret_value(), content=body, headers=headers, timeout=sink.timeout)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise httpx.HTTPStatusError(f"HTTP {answer.status_code}", request=answer.request, response=answer)
        if answer.status_code >= 300:
            raise _Refused(f"HTTP {answer.status_code}")


def _reason(exc: BaseException) -> str:
    """Why an attempt failed, without the URL (httpx names it in some messages)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    detail = redact(str(exc)).split(" for url ", 1)[0]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
