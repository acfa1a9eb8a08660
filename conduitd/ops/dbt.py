"""One dbt run in a child process (never in the daemon's: dbt spawns threads and processes and is
not re-entrant), and its outcome read from dbt's `target/run_results.json`.

`DbtRunner.run` starts `<executable> <command> --project-dir ... [--profiles-dir] [--target]
--vars '{"conduitd": <context>}'` (no `--vars` of ours when the command has its own) with the same
context as a JSON file named by the environment variable `CONDUITD_DBT_CONTEXT`. The context holds
the pipeline, its updated tables and what was committed since the previous dbt run (rows,
batches, positions, schema changes). The outcome (`success`, `failed`: dbt exit 1, a model or test
failed; `error`: dbt could not run; `timeout`; `cancelled`: the daemon stopped) is set as
`status.dbt`, counted in `conduitd_dbt_runs{pipeline,outcome}` and published as a `dbt` event. A
runner never raises for dbt's failures: the data is committed already and stays so."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from conduitd.dbtsettings import DbtSettings
from conduitd.ops.events import EventHub
from conduitd.ops.metrics import Metrics, PipelineStatus

log = logging.getLogger(__name__)

_FAILED_NODES = 20
_OUTPUT_LINES = 30
_instruments: weakref.WeakKeyDictionary[Metrics, tuple[Counter, Gauge]] = weakref.WeakKeyDictionary()


def instruments(metrics: Metrics) -> tuple[Counter, Gauge]:
    """`conduitd_dbt_runs{pipeline,outcome}` and `conduitd_dbt_failing{pipeline}` (1 while the last
    dbt run did not succeed), registered once per metrics registry."""
    if metrics not in _instruments:
        _instruments[metrics] = (
            Counter("conduitd_dbt_runs", "dbt runs after commits, by outcome (success, failed, error, timeout, "
                    "cancelled).", ["pipeline", "outcome"], registry=metrics.registry),
            Gauge("conduitd_dbt_failing", "1 while the pipeline's last dbt run did not succeed, else 0.",
                  ["pipeline"], registry=metrics.registry))
    return _instruments[metrics]


class DbtRunner:
    """Runs dbt for one pipeline, one run at a time; `last` is the latest outcome (or None)."""

    def __init__(self, settings: DbtSettings, pipeline: str, tables: list[str], *, metrics: Metrics,
                 events: EventHub) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tables = tables
        self.events = events
        self.runs, self.failing = instruments(metrics)
        self.last: dict[str, Any] | None = None
        self.count = 0
        self._lock = asyncio.Lock()
        self._since: PipelineStatus | None = None
        self._since_time: float | None = None

    def show(self, status: PipelineStatus, *, running: bool = False) -> None:
        """Put what /status shows about dbt into `status.dbt`."""
        status.dbt = {"running": running, "runs": self.count, "every": self.settings.every, "last": self.last}

    def skip(self, status: PipelineStatus, reason: str) -> None:
        """Report a dbt run that did not happen (nothing committed, the run stopped early)."""
        now = time.time()
        self.last = {"outcome": "skipped", "reason": reason, "started": _iso(now), "ended": _iso(now)}
        self.show(status)
        log.info("dbt for pipeline %s skipped: %s", self.pipeline, reason, extra={"pipeline": self.pipeline})

    async def run(self, status: PipelineStatus, *, trigger: str, stop: asyncio.Event | None = None,
                  grace: float = 0.0) -> dict[str, Any]:
        """Run dbt once, after the previous run ended; when `stop` is set the run gets `grace` more
        seconds, then it is interrupted and killed (outcome `cancelled`). Cancelling the caller
        kills the child too. Returns the outcome record (also in `status.dbt` and `last`)."""
        async with self._lock:
            self.show(status, running=True)
            started = time.time()
            context = self._context(status, trigger, started)
            with tempfile.TemporaryDirectory(prefix="conduitd-dbt-") as folder:
                path = Path(folder) / "context.json"
                path.write_bytes(orjson.dumps(context, default=str))
                outcome = await self._child(context, path, stop, grace)
            outcome.update(trigger=trigger, started=_iso(started), ended=_iso(time.time()),
                           duration_s=round(time.time() - started, 3))
            outcome.update(_results(Path(self.settings.project_dir) / "target" / "run_results.json", started))
            if outcome["outcome"] == "success" and outcome.get("failures"):
                outcome["outcome"] = "failed"  # dbt said 0 but a node failed: believe the node
            if outcome.get("results") or outcome["outcome"] == "success":
                outcome.pop("output", None)  # dbt's output only where run_results.json cannot say why
            self.count += 1
            self.last = outcome
            self._since, self._since_time = _snapshot(status), started
            self.show(status)
            self.runs.labels(self.pipeline, outcome["outcome"]).inc()
            self.failing.labels(self.pipeline).set(0 if outcome["outcome"] == "success" else 1)
            self.events.publish("dbt", self.pipeline, **{k: v for k, v in outcome.items() if k != "output"})
            level = logging.INFO if outcome["outcome"] == "success" else logging.ERROR
            log.log(level, "dbt for pipeline %s: %s (exit code %s, %.1fs)%s", self.pipeline, outcome["outcome"],
                    outcome.get("exit_code"), outcome["duration_s"], _why(outcome), extra={"pipeline": self.pipeline})
            return outcome

    def _argv(self, context: dict[str, Any]) -> list[str]:
        s = self.settings
        words = shlex.split(s.command)
        argv = [s.executable, *words, "--project-dir", s.project_dir]
        if s.profiles_dir is not None:
            argv += ["--profiles-dir", s.profiles_dir]
        if s.target is not None:
            argv += ["--target", s.target]
        if "--vars" not in words:
            argv += ["--vars", orjson.dumps({"conduitd": context}, default=str).decode()]
        return argv

    async def _child(self, context: dict[str, Any], path: Path, stop: asyncio.Event | None,
                     grace: float) -> dict[str, Any]:
        argv = self._argv(context)
        env = {**os.environ, "CONDUITD_DBT_CONTEXT": str(path), "CONDUITD_PIPELINE": self.pipeline}
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            return {"outcome": "error", "exit_code": None, "error": f"cannot start {argv[0]!r}: {exc.strerror or exc}"}
        tail: collections.deque[str] = collections.deque(maxlen=_OUTPUT_LINES)
        reader = asyncio.ensure_future(_read(child, tail, self.pipeline))
        ended = "success"
        try:
            ended = await self._wait(child, stop, grace)
        finally:
            if child.returncode is None:  # cancelled, timed out or stopped: the child goes too
                await _end(child, self.settings.kill_after)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(reader, 5)  # a grandchild may hold the pipe open: its output is lost
        code = child.returncode
        if ended == "success":
            ended = {0: "success", 1: "failed"}.get(code if code is not None else -1, "error")
        return {"outcome": ended, "exit_code": code, "output": list(tail)}

    async def _wait(self, child: asyncio.subprocess.Process, stop: asyncio.Event | None, grace: float) -> str:
        """Wait for the child; '' when it exited, else why it must end (timeout, cancelled)."""
        exited = asyncio.ensure_future(child.wait())
        stopped = asyncio.ensure_future(stop.wait() if stop is not None else asyncio.Event().wait())
        try:
            done, _ = await asyncio.wait({exited, stopped}, timeout=self.settings.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if exited in done:
                return "success"
            if stopped not in done:
                return "timeout"
            log.info("stopping: waiting up to %.0fs for the running dbt of pipeline %s", grace, self.pipeline,
                     extra={"pipeline": self.pipeline})
            done, _ = await asyncio.wait({exited}, timeout=grace)
            return "success" if exited in done else "cancelled"
        finally:
            stopped.cancel()
            if not exited.done():
                exited.cancel()

    def _context(self, status: PipelineStatus, trigger: str, now: float) -> dict[str, Any]:
        before = self._since
        counts = {c: getattr(status, c) - (getattr(before, c) if before else 0)
                  for c in ("rows_read", "rows_written", "dlq_rows", "rows_deleted", "batches")}
        if before is not None and counts["batches"] < 0:  # the pipeline restarted: its counters did too
            counts = {c: getattr(status, c) for c in counts}
        return {"pipeline": self.pipeline, "tables": self.tables, "destination": status.destination,
                "trigger": trigger, "since": _iso(self._since_time or status.started), "until": _iso(now),
                **counts, "last_commit": _iso(status.last_commit), "positions": dict(status.positions),
                "schema_changes": status.schema_changes[len(before.schema_changes) if before else 0:]}


async def _read(child: asyncio.subprocess.Process, tail: collections.deque[str], pipeline: str) -> None:
    assert child.stdout is not None
    async for raw in child.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        log.debug("dbt: %s", line, extra={"pipeline": pipeline})


async def _end(child: asyncio.subprocess.Process, kill_after: float) -> None:
    """Interrupt the child's process group (dbt cancels its queries on SIGINT), then kill it."""
    for signum, wait in ((signal.SIGINT, kill_after), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.shield(asyncio.wait_for(child.wait(), wait))
            return


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL when the daemon dies, even by SIGKILL or a second
    signal's immediate exit, so no dbt outlives it (its own session keeps terminal signals away)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _results(path: Path, started: float) -> dict[str, Any]:
    """Counts by node status and the failed nodes from run_results.json, when this run wrote it."""
    try:
        if path.stat().st_mtime < started - 1:
            return {"results": None}
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {"results": None}
    counts: dict[str, int] = {}
    failures: list[dict[str, Any]] = []
    for node in data.get("results") or []:
        state = str(node.get("status"))
        counts[state] = counts.get(state, 0) + 1
        if state in ("error", "fail", "runtime error") and len(failures) < _FAILED_NODES:
            failures.append({"node": node.get("unique_id"), "status": state,
                             "message": str(node.get("message") or "")[:500]})
    return {"results": counts, "failures": failures, "elapsed_s": data.get("elapsed_time"),
            "invocation_id": (data.get("metadata") or {}).get("invocation_id")}


def _why(outcome: dict[str, Any]) -> str:
    if outcome["outcome"] == "success":
        return ""
    if outcome.get("failures"):
        return ": " + "; ".join(f"{f['node']}: {f['message']}" for f in outcome["failures"][:3])
    if outcome.get("error"):
        return f": {outcome['error']}"
    return ": " + " | ".join(outcome.get("output", [])[-5:])


def _snapshot(status: PipelineStatus) -> PipelineStatus:
    return PipelineStatus(status.name, status.source, status.destination, status.table,
                          rows_read=status.rows_read, rows_written=status.rows_written, dlq_rows=status.dlq_rows,
                          rows_deleted=status.rows_deleted, batches=status.batches,
                          schema_changes=list(status.schema_changes))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"

