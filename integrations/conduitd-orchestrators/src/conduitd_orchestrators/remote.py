"""A bounded run on a running daemon, through its control plane (`service.api`): POST
/api/v1/pipelines/{name}/runs with an operator token, then GET /api/v1/runs/{id} until the run is
no longer `running`. Standard library only, so it runs in any orchestrator's environment."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from conduitd_orchestrators.summary import ConduitdRunFailed, RunSummary


@dataclass(frozen=True)
class RemoteRun:
    """A started run: poll it with `poll_run`."""

    base_url: str
    token: str
    run_id: str
    pipeline: str


def start_run(base_url: str, token: str, pipeline: str, *, idempotency_key: str | None = None,
              timeout: float = 30.0) -> RemoteRun:
    """Start a bounded run of `pipeline` (idle, paused or failed). The same `idempotency_key`
    (e.g. the orchestrator's run and try) answers the same run instead of a second one. A refusal
    (401, 403, 404, 409) raises ConduitdRunFailed with exit code 2 and the API's reason; an
    unreachable daemon raises it with 5 (retriable)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = _call("POST", base_url, f"/api/v1/pipelines/{pipeline}/runs", token, headers, timeout)
    return RemoteRun(base_url, token, str(body["id"]), pipeline)


def poll_run(run: RemoteRun, *, timeout: float = 30.0) -> dict[str, Any] | None:
    """The run's record when it has ended, None while it is running."""
    body = _call("GET", run.base_url, f"/api/v1/runs/{run.run_id}", run.token, {}, timeout)
    return None if body.get("state") == "running" else body


def finish(record: dict[str, Any]) -> RunSummary:
    """The summary of an ended run's record; raise ConduitdRunFailed when it failed."""
    code = record.get("exit_code")
    exit_code = int(code) if code is not None else (0 if record.get("state") == "succeeded" else 1)
    summary = RunSummary(
        pipeline=str(record.get("pipeline", "")), exit_code=exit_code,
        status="success" if exit_code == 0 and not record.get("dlq_rows") else (
            "partial" if exit_code == 0 else "failed"),
        rows_read=int(record.get("rows_read", 0)), rows_written=int(record.get("rows_written", 0)),
        dlq_rows=int(record.get("dlq_rows", 0)), batches=int(record.get("batches", 0)),
        error=record.get("error"), started=record.get("started"), ended=record.get("ended"),
        mode="remote", run_id=str(record.get("id")))
    if exit_code != 0:
        raise ConduitdRunFailed(exit_code, str(record.get("error") or "the run failed"), summary)
    return summary


def run_remote(base_url: str, token: str, pipeline: str, *, idempotency_key: str | None = None,
               poll_interval: float = 2.0, timeout: float | None = None) -> RunSummary:
    """Start a bounded run of `pipeline` on the daemon at `base_url` and wait for its end; return
    its summary or raise ConduitdRunFailed (exit code and reason of the run). After `timeout`
    seconds of waiting, fail with exit code 1 (the run goes on in the daemon)."""
    run = start_run(base_url, token, pipeline, idempotency_key=idempotency_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = poll_run(run)
        if record is not None:
            return finish(record)
        if deadline is not None and time.monotonic() > deadline:
            raise ConduitdRunFailed(1, f"run {run.run_id} still running after {timeout} s")
        time.sleep(poll_interval)


def _call(method: str, base_url: str, path: str, token: str, headers: dict[str, str], timeout: float
          ) -> dict[str, Any]:
    request = urllib.request.Request(base_url.rstrip("/") + path, method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read() or b"{}")
            return body
    except urllib.error.HTTPError as error:
        detail = _detail(error)
        retriable = error.code in (502, 503, 504)
        raise ConduitdRunFailed(5 if retriable else 2, f"{method} {path}: HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ConduitdRunFailed(5, f"{method} {base_url}{path}: the daemon is unreachable: {reason}") from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        return error.reason
    return str(body.get("detail") or body.get("title") or error.reason) if isinstance(body, dict) else error.reason
