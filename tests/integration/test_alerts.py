"""Alerts reach a real local HTTP receiver: one failure alert and one recovery for a PostgreSQL
outage (the test's own server, stopped and started), a DLQ-threshold alert, envelopes signed
with the configured secret; and a receiver that answers 500 or never answers does not slow the
commits down, its failures being counted."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from conduitd.configfile import load_config
from conduitd.ops.alerts.envelope import verify
from conduitd.runtime.supervisor import Runtime
from tests.helpers.api import serving, until
from tests.helpers.private_pg import create_private_postgres

SECRET = "hook-secret-7f3a9c"


@dataclass
class Receiver:
    """An HTTP server that records each POST (headers and raw body) and answers as told."""

    mode: str = "ok"  # ok | error (500) | hang (never answers)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Statuses to answer first, in order (then `mode`)."""
    retry_after: str | None = None
    """The `Retry-After` header of the scripted answers."""
    at: list[float] = field(default_factory=list)
    """When each POST arrived (the loop's clock)."""
    paths: list[str] = field(default_factory=list)
    delay: float = 0.0
    """Seconds to wait before answering (a slow receiver)."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.at.append(asyncio.get_running_loop().time())
        self.received.append((dict(request.headers), body))
        self.paths.append(request.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.answers:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.answers.pop(0), text="scripted", headers=headers)
        if self.mode == "hang":
            await self.release.wait()
        return web.Response(status=500 if self.mode == "error" else 200, text="ok")

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@asynccontextmanager
async def receiver(mode: str = "ok") -> AsyncIterator[Receiver]:
    target = Receiver(mode)
    app = web.Application()
    app.router.add_post("/{name}", target.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    target.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield target
    finally:
        target.release.set()
        await runner.cleanup()


def alerts_config(url: str, **rules: Any) -> dict[str, Any]:
    return {"sinks": [{"type": "webhook", "name": "hook", "url": url, "secret": SECRET, "timeout": "0.3s"}],
            "stalled_after": None, "check_interval": "0.05s", "retry_wait": "0.05s", "retries": 1, **rules}


def write_rows(path: Path, start: int, count: int, *, bad_every: int = 0) -> None:
    lines = [{"id": i, "email": "bad" if bad_every and i % bad_every == 0 else f"u{i}@x.org"}
             for i in range(start, start + count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@asynccontextmanager
async def running(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[Runtime]:
    """A daemon of `config` (no control plane) in this event loop, stopped as SIGTERM would."""
    path = tmp_path / "conduitd.yml"
    path.write_text(yaml.safe_dump(config))
    runtime = Runtime(load_config(path))
    task = asyncio.create_task(runtime.run())
    try:
        yield runtime
    finally:
        runtime.stop.set()
        await asyncio.wait_for(task, 60)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def deliveries(runtime: Runtime, outcome: str) -> float:
    value = runtime.metrics.registry.get_sample_value("conduitd_alert_deliveries_total",
                                                       {"sink": "hook", "outcome": outcome})
    return value or 0.0


async def test_a_postgres_outage_is_one_failure_alert_and_one_recovery_signed_and_linked(tmp_path: Path) -> None:
    server = create_private_postgres()
    data = tmp_path / "in"
    data.mkdir()
    try:
        async with receiver() as hook:
            config = {
                "service": {"retry_max_wait": "0.3s"},
                "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl"), "poll_interval": "0.1s"}],
                "destinations": [{"name": "pg", "type": "postgres", "dsn": server.dsn, "connect_timeout": "2s"}],
                "resources": [{"name": "events", "source": "s", "destination": "pg", "table": "events",
                               "batch": {"max_wait": "0.1s"}}],
                "alerts": alerts_config(hook.url, failed_after="0s"),
            }
            async with serving(tmp_path, config) as daemon:
                status = daemon.runtime.pipelines[0].status
                write_rows(data / "a.jsonl", 0, 10)
                await until(lambda: status.rows_written == 10, "the first rows to commit")
                await asyncio.to_thread(server.stop)
                write_rows(data / "b.jsonl", 10, 10)
                await until(lambda: len(hook.received) >= 1, "the failure alert")
                await asyncio.to_thread(server.start)
                await until(lambda: daemon.runtime.pipelines[0].status.rows_written == 20, "the rest to commit")
                await until(lambda: len(hook.received) >= 2, "the recovery alert")
                base = daemon.base
        events = [(d["event"], d["status"]) for d in hook.documents()]
        assert events == [("pipeline.failed", "firing"), ("pipeline.failed", "resolved")], hook.documents()
        failed, recovered = hook.documents()
        assert failed["version"] == 1 and failed["pipeline"] == "events" and failed["project"] == "default"
        assert failed["severity"] == "critical" and recovered["severity"] == "info"
        assert failed["dedup_key"] == recovered["dedup_key"] and failed["incident"] == recovered["incident"]
        assert failed["link"] == f"{base}/pipelines/events"
        for headers, body in hook.received:
            assert verify(body, SECRET, headers), headers
            assert not verify(body, SECRET + "x", headers)
    finally:
        server.remove()


def pipeline(tmp_path: Path, data: Path, alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl"), "poll_interval": "0.05s"}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "users", "source": "s", "destination": "db", "table": "users",
                       "batch": {"max_rows": 50, "max_wait": "0.05s"},
                       "quality_checks": [{"column": "email", "check": "regex", "pattern": "^[^@]+@[^@]+$",
                                           "action": "dlq"}]}],
        "alerts": alerts,
    }


async def test_dlq_rows_above_the_threshold_are_alerted_once_with_a_signed_envelope(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    async with receiver() as hook:
        async with running(tmp_path, pipeline(tmp_path, data, alerts_config(
                hook.url, dlq_rows_above=5, dlq_window="1h"))) as runtime:
            status = runtime.pipelines[0].status
            write_rows(data / "a.jsonl", 0, 40, bad_every=10)  # 4 rejects: not above 5
            await until(lambda: status.rows_written + status.dlq_rows == 40, "the first file")
            write_rows(data / "b.jsonl", 40, 40, bad_every=10)  # 8 in the window
            await until(lambda: status.rows_written + status.dlq_rows == 80, "the second file")
            await until(lambda: len(hook.received) >= 1, "the DLQ alert")
            write_rows(data / "c.jsonl", 80, 40, bad_every=10)
            await until(lambda: status.rows_written + status.dlq_rows == 120, "the third file")
        assert deliveries(runtime, "sent") == 1 and deliveries(runtime, "failed") == 0
    (document,) = hook.documents()
    assert document["event"] == "dlq.threshold" and document["status"] == "firing"
    assert document["details"]["dlq_rows"] == 8 and document["severity"] == "warning"
    assert document["link"] is None  # no control plane, no ui_url
    ((headers, body),) = hook.received
    assert verify(body, SECRET, headers) and headers["X-Conduitd-Signature"].startswith("v1=")


ROWS, BATCH = 6000, 50


async def commit_seconds(tmp_path: Path, mode: str | None) -> tuple[float, int, float]:
    """(seconds to commit ROWS rows, alerts the receiver got, deliveries counted as failed) with
    a receiver in `mode`, or without alerts (None). Every batch rejects rows and the DLQ window is
    tiny, so incidents open and end while the rows commit and the receiver is kept busy."""
    run = tmp_path / (mode or "no-alerts")
    data = run / "in"
    data.mkdir(parents=True)
    async with receiver(mode or "ok") as hook:
        alerts = alerts_config(hook.url, dlq_rows_above=0, dlq_window="0.02s", max_per_minute=100_000)
        config = pipeline(run, data, alerts)
        if mode is None:
            del config["alerts"]
        async with running(run, config) as runtime:
            status = runtime.pipelines[0].status
            await until(lambda: status.state == "running", "the pipeline to start")
            loop = asyncio.get_running_loop()
            started = loop.time()
            for index in range(0, ROWS, BATCH):
                write_rows(data / f"{index:06d}.jsonl", index, BATCH, bad_every=7)
            await until(lambda: status.rows_written + status.dlq_rows == ROWS, "every row to commit", within=120)
            took = loop.time() - started
            if mode is not None:
                await until(lambda: len(hook.received) >= 2, "alerts to reach the receiver")
        return took, len(hook.received), deliveries(runtime, "failed")


async def test_a_failing_or_hanging_receiver_does_not_slow_commits_and_its_failures_are_counted(
        tmp_path: Path) -> None:
    baseline, _, _ = await commit_seconds(tmp_path, None)
    for mode in ("hang", "error"):
        took, received, failed = await commit_seconds(tmp_path, mode)
        # Generous: the same work on the same machine. Were a delivery in the commits' way, each
        # alert would cost the receiver's timeout (0.3 s, tried twice): many times longer.
        assert took < baseline * 3 + 3.0, f"{mode}: {took:.2f}s against {baseline:.2f}s without alerts"
        assert failed >= 1, f"{mode}: no failed delivery counted ({received} requests received)"



async def test_retries_until_delivered_a_refusal_is_not_retried_and_slack_gets_blocks(
        tmp_path: Path, caplog: Any) -> None:
    data = tmp_path / "in"
    data.mkdir()
    async with receiver() as hook, receiver() as slack:
        hook.answers = [503, 429]  # retriable twice, then delivered
        slack.answers = [404]  # a refusal: a retry would not change it
        alerts = alerts_config(hook.url, dlq_rows_above=0, dlq_window="1h", retries=3)
        alerts["sinks"].append({"type": "slack", "name": "team", "url": slack.url})
        async with running(tmp_path, pipeline(tmp_path, data, alerts)) as runtime:
            write_rows(data / "a.jsonl", 0, 20, bad_every=10)
            await until(lambda: deliveries(runtime, "sent") == 1, "the webhook delivery")
            await until(lambda: count(runtime, "team", "failed") == 1, "the Slack refusal")
    assert len(hook.received) == 3 and len(slack.received) == 1
    assert count(runtime, "hook", "failed") == 0 and count(runtime, "team", "sent") == 0
    assert len({json.loads(body)["id"] for _, body in hook.received}) == 1  # one message, tried three times
    message = json.loads(slack.received[0][1])
    assert message["blocks"][0]["type"] == "header" and "dlq.threshold" in message["text"]
    assert "alert sink team: could not deliver" in caplog.text and "HTTP 404" in caplog.text
    # What conduitd and its HTTP client logged (not the test receivers' own access log): the
    # sinks' URLs are secrets (httpx logs every URL at INFO unless kept quiet).
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp"))
    assert SECRET not in ours and "/hook" not in ours and "127.0.0.1" not in ours


async def test_a_retry_waits_as_long_as_the_receivers_retry_after_asks(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    async with receiver() as hook:
        hook.answers, hook.retry_after = [429], "1"  # retry_wait is 0.05 s: the header must win
        alerts = alerts_config(hook.url, dlq_rows_above=0, dlq_window="1h", retries=2)
        async with running(tmp_path, pipeline(tmp_path, data, alerts)) as runtime:
            write_rows(data / "a.jsonl", 0, 20, bad_every=10)
            await until(lambda: deliveries(runtime, "sent") == 1, "the webhook delivery")
    assert len(hook.received) == 2
    assert hook.at[1] - hook.at[0] >= 0.95, "the retry came before Retry-After said"


def count(runtime: Runtime, sink: str, outcome: str) -> float:
    value = runtime.metrics.registry.get_sample_value("conduitd_alert_deliveries_total",
                                                       {"sink": sink, "outcome": outcome})
    return value or 0.0


async def test_a_pipeline_that_stops_the_daemon_still_sends_its_failure_alert(tmp_path: Path) -> None:
    """Without the control plane a failure ends the process: the alert task is cancelled with the
    others, and still gets the failure alert out before it ends."""
    data = tmp_path / "in"
    data.mkdir()
    async with receiver() as hook:
        hook.delay = 1.0  # still answering when the process would end
        alerts = alerts_config(hook.url, failed_after="0s")
        alerts["sinks"][0]["timeout"] = "4s"
        config = pipeline(tmp_path, data, alerts)
        config["resources"][0]["quality_checks"] = [{"column": "id", "check": "range", "max": 5, "action": "fail"}]
        write_rows(data / "a.jsonl", 0, 20)
        path = tmp_path / "conduitd.yml"
        path.write_text(yaml.safe_dump(config))
        runtime = Runtime(load_config(path))
        try:
            code = await asyncio.wait_for(runtime.run(), 60)
        except BaseExceptionGroup as group:
            code = None
            assert group.exceptions
        finally:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    assert code != 0
    assert deliveries(runtime, "sent") == 1
    (document,) = hook.documents()
    assert (document["event"], document["status"], document["pipeline"]) == ("pipeline.failed", "firing", "users")
