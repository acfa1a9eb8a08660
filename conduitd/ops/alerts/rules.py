"""The alert rules, pure: the runtime's events and pipeline statuses in, alerts out.

An *incident* is one condition of one pipeline (`kind`, e.g. `pipeline.failed`) from the moment
it is seen until it is over. Opening an incident yields one `firing` alert; ending it yields one
`resolved` alert; everything seen in between yields nothing (the de-duplication). Kinds:

| kind | opens when | ends when |
|---|---|---|
| pipeline.failed | state `failed`, or `retrying` for `failed_after` | state `running` or a commit |
| pipeline.stalled | no commit for `stalled_after` while lag > 0 | a commit, or lag 0 |
| dlq.threshold | more than `dlq_rows_above` DLQ rows within `dlq_window` | the window holds no more than that |
| lag.threshold | lag (sum over partitions, `lag_unit`) above `lag_above` | lag at or below it |
| checkpoint.conflict | a batch refused by the checkpoint compare-and-set | the next commit |
| schema.drift_pending | a schema change waits for a human (not applied) | none waits (e.g. restarted after migrating) |
| dbt.failed | a dbt run after commits ends `failed`, `error` or `timeout` | a dbt run succeeds |

Nothing here reads a clock or does I/O: `now` (Unix seconds) is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from conduitd.alertsettings import AlertsConfig
from conduitd.core.redact import redact
from conduitd.ops.metrics import PipelineStatus

SEVERITY = {"pipeline.failed": "critical", "pipeline.stalled": "critical", "dlq.threshold": "warning",
            "lag.threshold": "warning", "checkpoint.conflict": "warning", "schema.drift_pending": "warning",
            "dbt.failed": "warning"}
"""Severity of a firing alert by kind; a resolved alert is `info`."""
_QUIET_STATES = ("paused", "pausing", "stopped", "done", "failed")
"""States in which a pipeline is not expected to commit (no stall, no lag alert)."""


@dataclass(frozen=True)
class Alert:
    """One message to every sink: an incident opened (`firing`) or ended (`resolved`)."""

    kind: str
    status: Literal["firing", "resolved"]
    pipeline: str
    project: str
    severity: str
    summary: str
    at: float
    """Unix time the condition was seen."""
    dedup_key: str
    """The same for the firing and the resolved alert of an incident (and for later incidents of
    the same kind on the same pipeline): what a receiver groups by."""
    incident: str
    """Unique per incident: `<dedup_key>/<opened at, ms>`."""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Incident:
    opened: float
    incident: str


@dataclass
class _Pipeline:
    retrying_since: float | None = None
    last_commit: float | None = None
    dlq: deque[tuple[float, int]] = field(default_factory=deque)
    last_error: str | None = None


class Rules:
    """Incidents of every pipeline; `on_event` and `on_statuses` return the alerts to send."""

    def __init__(self, settings: AlertsConfig, projects: Mapping[str, str]) -> None:
        self.settings = settings
        self.projects = dict(projects)
        self.open: dict[tuple[str, str], _Incident] = {}
        self._pipelines: dict[str, _Pipeline] = {}

    def watched(self, pipeline: str) -> bool:
        return not self.settings.pipelines or pipeline in self.settings.pipelines

    def on_event(self, event: Mapping[str, Any], now: float, status: PipelineStatus | None = None) -> list[Alert]:
        """An event of `EventHub` (`state`, `batch`; others are ignored); `status` is the
        pipeline's current status when known (for the error text in a summary)."""
        name = str(event.get("pipeline", ""))
        if not self.watched(name):
            return []
        seen = self._pipeline(name)
        if status is not None and status.last_error:
            seen.last_error = status.last_error
        alerts: list[Alert] = []
        if event.get("kind") == "state":
            state = event.get("state")
            if state == "retrying":
                seen.retrying_since = now if seen.retrying_since is None else seen.retrying_since
                if now - seen.retrying_since >= self.settings.failed_after:
                    alerts += self._open(name, "pipeline.failed", now, self._failing(name, seen, now))
            else:
                seen.retrying_since = None
            if state == "failed":
                alerts += self._open(name, "pipeline.failed", now, f"pipeline {name} failed{self._why(seen)}")
            elif state == "running":
                alerts += self._resolve(name, "pipeline.failed", now, f"pipeline {name} recovered")
        elif event.get("kind") == "batch":
            alerts += self._batch(name, seen, event, now)
        elif event.get("kind") == "dbt" and self.settings.dbt:
            alerts += self._dbt(name, event, now)
        return alerts

    def on_statuses(self, statuses: Iterable[PipelineStatus], now: float) -> list[Alert]:
        """Conditions read from statuses: failing too long, stalls, lag, the DLQ window, drift."""
        alerts: list[Alert] = []
        for status in statuses:
            if not self.watched(status.name):
                continue
            seen = self._pipeline(status.name)
            seen.last_error = status.last_error or seen.last_error
            alerts += self._retrying_too_long(status, seen, now)
            alerts += self._stall(status, seen, now)
            alerts += self._lag(status, now)
            alerts += self._dlq_window(status.name, seen, now)
            alerts += self._drift(status, now)
        return alerts

    # -- conditions ------------------------------------------------------------------------------

    def _batch(self, name: str, seen: _Pipeline, event: Mapping[str, Any], now: float) -> list[Alert]:
        outcome = event.get("outcome")
        alerts: list[Alert] = []
        if outcome == "conflict" and self.settings.checkpoint_conflicts:
            alerts += self._open(name, "checkpoint.conflict", now, f"pipeline {name}: a batch was refused by the "
                                 "checkpoint compare-and-set (another replica moved the partition)")
        if outcome != "committed":
            return alerts
        seen.last_commit, seen.retrying_since = now, None
        alerts += self._resolve(name, "pipeline.failed", now, f"pipeline {name} recovered")
        alerts += self._resolve(name, "checkpoint.conflict", now, f"pipeline {name} commits again")
        alerts += self._resolve(name, "pipeline.stalled", now, f"pipeline {name} commits again")
        rejected = int(event.get("dlq_rows") or 0)
        if rejected and self.settings.dlq_rows_above is not None:
            seen.dlq.append((now, rejected))
            alerts += self._dlq_window(name, seen, now)
        return alerts

    def _dbt(self, name: str, event: Mapping[str, Any], now: float) -> list[Alert]:
        """The data is committed either way: a failing dbt is a warning about what is built on it."""
        outcome = event.get("outcome")
        if outcome == "success":
            return self._resolve(name, "dbt.failed", now, f"pipeline {name}: dbt succeeds again")
        if outcome not in ("failed", "error", "timeout"):
            return []  # skipped, cancelled: says nothing of the models
        failures = [f"{f.get('node')}: {f.get('message')}" for f in event.get("failures") or [] if isinstance(f, dict)]
        why = failures[0] if failures else (event.get("error") or f"exit code {event.get('exit_code')}")
        return self._open(name, "dbt.failed", now, f"pipeline {name}: dbt {outcome} after commits (the data stays "
                          f"committed): {why}", {"outcome": outcome, "exit_code": event.get("exit_code"),
                                                  "results": event.get("results"), "failures": failures[:20]})

    def _retrying_too_long(self, status: PipelineStatus, seen: _Pipeline, now: float) -> list[Alert]:
        """Also opens and ends `pipeline.failed` from the state itself, should the hub have dropped
        the state event (it drops the oldest for a subscriber that falls behind)."""
        if status.state == "failed":
            return self._open(status.name, "pipeline.failed", now, f"pipeline {status.name} failed{self._why(seen)}")
        if status.state == "running":
            seen.retrying_since = None
            return self._resolve(status.name, "pipeline.failed", now, f"pipeline {status.name} recovered")
        if status.state != "retrying":
            return []
        seen.retrying_since = now if seen.retrying_since is None else seen.retrying_since
        if now - seen.retrying_since < self.settings.failed_after:
            return []
        return self._open(status.name, "pipeline.failed", now, self._failing(status.name, seen, now))

    def _stall(self, status: PipelineStatus, seen: _Pipeline, now: float) -> list[Alert]:
        limit = self.settings.stalled_after
        if limit is None:
            return []
        waiting = sum(v for per_unit in status.lag.values() for v in per_unit.values() if v > 0)
        if not waiting or status.state in _QUIET_STATES:
            return self._resolve(status.name, "pipeline.stalled", now, f"pipeline {status.name} is no longer stalled")
        since = max(t for t in (status.last_commit, seen.last_commit, status.started) if t is not None)
        if now - since < limit:
            return []
        return self._open(status.name, "pipeline.stalled", now, f"pipeline {status.name} has committed nothing "
                          f"for {now - since:.0f}s while data waits (lag {_lag_text(status.lag)})",
                          {"seconds_since_commit": round(now - since, 3), "lag": status.lag})

    def _lag(self, status: PipelineStatus, now: float) -> list[Alert]:
        limit, unit = self.settings.lag_above, self.settings.lag_unit
        if limit is None:
            return []
        lag = sum(per_unit.get(unit, 0.0) for per_unit in status.lag.values())
        if lag > limit and status.state not in _QUIET_STATES:
            return self._open(status.name, "lag.threshold", now, f"pipeline {status.name} lags {lag:g} {unit} "
                              f"(above {limit:g})", {"lag": lag, "unit": unit, "threshold": limit})
        if lag <= limit:
            return self._resolve(status.name, "lag.threshold", now, f"pipeline {status.name} lag is back to {lag:g} "
                                 f"{unit}")
        return []

    def _dlq_window(self, name: str, seen: _Pipeline, now: float) -> list[Alert]:
        limit = self.settings.dlq_rows_above
        if limit is None:
            return []
        while seen.dlq and seen.dlq[0][0] <= now - self.settings.dlq_window:
            seen.dlq.popleft()
        rows = sum(count for _, count in seen.dlq)
        window = self.settings.dlq_window
        if rows > limit:
            return self._open(name, "dlq.threshold", now, f"pipeline {name} sent {rows} rows to the DLQ within "
                              f"{window:g}s (above {limit})",
                              {"dlq_rows": rows, "window_s": window, "threshold": limit})
        return self._resolve(name, "dlq.threshold", now, f"pipeline {name}: DLQ rows within {window:g}s are back to "
                             f"{rows}")

    def _drift(self, status: PipelineStatus, now: float) -> list[Alert]:
        if not self.settings.schema_drift:
            return []
        pending = [c for c in status.schema_changes if not c.get("applied")]
        if not pending:
            return self._resolve(status.name, "schema.drift_pending", now, f"pipeline {status.name}: no schema "
                                 "change waits any more")
        changes = [{k: c.get(k) for k in ("table", "change", "column", "old", "new")} for c in pending[:20]]
        return self._open(status.name, "schema.drift_pending", now, f"pipeline {status.name}: {len(pending)} schema "
                          "change(s) wait to be applied (see its schema page)", {"changes": changes})

    # -- incidents -------------------------------------------------------------------------------

    def _open(self, name: str, kind: str, now: float, summary: str,
              details: Mapping[str, Any] | None = None) -> list[Alert]:
        if (name, kind) in self.open:
            return []
        key = self._key(name, kind)
        incident = _Incident(now, f"{key}/{int(now * 1000)}")
        self.open[(name, kind)] = incident
        return [self._alert(name, kind, "firing", SEVERITY[kind], summary, now, incident, details or {})]

    def _resolve(self, name: str, kind: str, now: float, summary: str) -> list[Alert]:
        incident = self.open.pop((name, kind), None)
        if incident is None:
            return []
        details = {"opened": incident.opened, "duration_s": round(now - incident.opened, 3)}
        return [self._alert(name, kind, "resolved", "info", summary, now, incident, details)]

    def _alert(self, name: str, kind: str, state: Literal["firing", "resolved"], severity: str, summary: str,
               now: float, incident: _Incident, details: Mapping[str, Any]) -> Alert:
        return Alert(kind=kind, status=state, pipeline=name, project=self.projects.get(name, "default"),
                     severity=severity, summary=redact(summary), at=now, dedup_key=self._key(name, kind),
                     incident=incident.incident, details=details)

    def _key(self, name: str, kind: str) -> str:
        return f"conduitd/{self.projects.get(name, 'default')}/{name}/{kind}"

    def _pipeline(self, name: str) -> _Pipeline:
        return self._pipelines.setdefault(name, _Pipeline())

    def _failing(self, name: str, seen: _Pipeline, now: float) -> str:
        since = 0.0 if seen.retrying_since is None else now - seen.retrying_since
        return f"pipeline {name} has been failing for {since:.0f}s and retries{self._why(seen)}"

    @staticmethod
    def _why(seen: _Pipeline) -> str:
        return f": {seen.last_error}" if seen.last_error else ""


def _lag_text(lag: Mapping[str, Mapping[str, float]]) -> str:
    totals: dict[str, float] = {}
    for per_unit in lag.values():
        for unit, value in per_unit.items():
            totals[unit] = totals.get(unit, 0.0) + value
    return ", ".join(f"{v:g} {u}" for u, v in sorted(totals.items())) or "unknown"

