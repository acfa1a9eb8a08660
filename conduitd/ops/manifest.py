"""The run manifest: one JSON line per `--once` run, and per interval in daemon mode, appended to
`service.manifest_path` for orchestrators and audits. It never holds a secret: only names,
counts, positions and schema changes."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from conduitd.core.redact import redact_value
from conduitd.ops.durable import append_whole
from conduitd.ops.metrics import Metrics, PipelineStatus
from conduitd.oserrors import os_error_text

log = logging.getLogger(__name__)

_COUNTERS = ("rows_read", "rows_written", "dlq_rows", "rows_deleted", "batches")


class Manifest:
    """Appends records to a JSON-lines file; each record covers the time since the previous one."""

    def __init__(self, path: str | Path, *, mode: str, metrics: Metrics | None = None) -> None:
        self.path = Path(path)
        self.mode = mode
        self.metrics = metrics
        self.failures = 0
        self._since = time.time()
        self._previous: dict[str, PipelineStatus] = {}

    def write(self, statuses: Sequence[PipelineStatus], *, exit_code: int | None, final: bool) -> dict[str, Any]:
        """Append one record (the interval or the run that just ended) and return it. A record
        that cannot be written (the disk filled, the file was made read-only after the start
        check) is logged as an error and counted; the data it describes is committed already,
        so the pipelines go on and the exit code is theirs."""
        now = time.time()
        pipelines = [self._pipeline(s) for s in statuses]
        record: dict[str, Any] = {
            "kind": "run" if self.mode == "once" else ("final" if final else "interval"),
            "started": _iso(self._since), "ended": _iso(now), "duration_s": round(now - self._since, 3),
            "status": _overall(pipelines, exit_code), "exit_code": exit_code, "pipelines": pipelines,
        }
        try:
            append_whole(self.path, orjson.dumps(redact_value(record), default=str) + b"\n")
        except OSError as exc:
            self.failures += 1
            if self.metrics is not None:
                self.metrics.manifest_errors.inc()
            log.error("cannot write the manifest record to %s: %s (the record is lost; the data it describes is "
                      "committed)", self.path, os_error_text(exc))
            return record  # the next record covers this interval too: `_since` stays
        self._since = now
        self._previous = {s.name: copy.deepcopy(s) for s in statuses}
        return record

    def _pipeline(self, status: PipelineStatus) -> dict[str, Any]:
        before = self._previous.get(status.name)
        counts = {c: getattr(status, c) - (getattr(before, c) if before else 0) for c in _COUNTERS}
        by_rule = {r: n - (before.dlq_rows_by_rule.get(r, 0) if before else 0)
                   for r, n in status.dlq_rows_by_rule.items()}
        quality = {rule: {action: n - (before.quality.get(rule, {}).get(action, 0) if before else 0)
                          for action, n in actions.items()} for rule, actions in status.quality.items()}
        changes = status.schema_changes[len(before.schema_changes) if before else 0:]
        positions_before = dict(before.positions) if before else dict(status.positions_at_start)
        failed = status.state == "failed"
        return {
            "pipeline": status.name, "source": status.source, "destination": status.destination,
            "table": status.table, "state": status.state,
            "status": "failed" if failed else ("partial" if counts["dlq_rows"] else "success"),
            "rows_read": counts["rows_read"], "rows_written": counts["rows_written"],
            "dlq_rows": counts["dlq_rows"], "rows_deleted": counts["rows_deleted"],
            "batches": counts["batches"], "dlq_rows_by_rule": {r: n for r, n in by_rule.items() if n},
            "quality": {r: a for r, a in quality.items() if any(a.values())},
            "positions_before": positions_before, "positions_after": dict(status.positions),
            "schema_changes": changes, "error": status.last_error if failed else None,
            "dbt": _dbt_since(status, before),
        }


def _dbt_since(status: PipelineStatus, before: PipelineStatus | None) -> dict[str, Any] | None:
    """The last dbt outcome (`after_commit.dbt`) when it came since the previous record, else None."""
    last = (status.dbt or {}).get("last")
    return last if last is not None and last != ((before.dbt or {}).get("last") if before else None) else None


def _overall(pipelines: Sequence[dict[str, Any]], exit_code: int | None) -> str:
    if (exit_code not in (None, 0)) or any(p["status"] == "failed" for p in pipelines):
        return "failed"
    return "partial" if any(p["status"] == "partial" for p in pipelines) else "success"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"
