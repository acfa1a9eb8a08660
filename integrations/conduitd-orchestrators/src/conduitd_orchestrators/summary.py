"""What a bounded conduitd run left behind (its summary) and how a failed one is raised: the exit
codes of README "Exit codes", which of them an orchestrator may retry, and the run's manifest
record read back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXIT_MEANINGS = {
    0: "success",
    1: "runtime failure",
    2: "configuration or usage error",
    3: "a data-quality rule with action: fail rejected a row",
    4: "schema incompatibility",
    5: "a dependency is unreachable (retriable)",
}
RETRIABLE_EXIT_CODES = frozenset({5})
"""Exit 5 (a dependency unreachable, a retriable failure outlasted once_retry_timeout) may pass on
its own; 2-4 (config, quality, schema) fail the same way again until someone changes something;
1 is an unexpected runtime failure, not retried either."""


@dataclass(frozen=True)
class RunSummary:
    """One pipeline's bounded run. Counts, positions and schema changes come from the manifest
    record (local runs); a remote run carries the counts the control plane reports."""

    pipeline: str
    exit_code: int
    status: str
    """success, partial (some rows went to the DLQ) or failed."""
    rows_read: int = 0
    rows_written: int = 0
    dlq_rows: int = 0
    rows_deleted: int = 0
    batches: int = 0
    destination: str = ""
    table: str = ""
    quality: dict[str, dict[str, int]] = field(default_factory=dict)
    """Violations per rule name and action (dlq, warn, fail) in this run."""
    dlq_rows_by_rule: dict[str, int] = field(default_factory=dict)
    positions_before: dict[str, Any] = field(default_factory=dict)
    positions_after: dict[str, Any] = field(default_factory=dict)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None
    mode: str = "local"
    """local (a subprocess) or remote (the control-plane API)."""
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for XCom, Prefect results, Dagster metadata)."""
        return asdict(self)


class ConduitdRunFailed(Exception):
    """A bounded run ended with a non-zero exit code; `reason` is conduitd's own one-line error
    (or the meaning of the exit code when it gave none) and `summary` what was committed before."""

    def __init__(self, exit_code: int, reason: str, summary: RunSummary | None = None) -> None:
        self.exit_code = exit_code
        self.reason = reason
        self.summary = summary
        meaning = EXIT_MEANINGS.get(exit_code, "unknown exit code")
        super().__init__(f"conduitd exited {exit_code} ({meaning}): {reason}")

    def __reduce__(self) -> tuple[type[ConduitdRunFailed], tuple[int, str, RunSummary | None]]:
        """Pickled whole (orchestrators persist task exceptions): exit code, reason and summary."""
        return (type(self), (self.exit_code, self.reason, self.summary))

    @property
    def retriable(self) -> bool:
        return self.exit_code in RETRIABLE_EXIT_CODES


def manifest_size(path: Path) -> int:
    """The manifest's size now (0 when it does not exist yet): records past it are newer."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def summary_from_manifest(path: Path, offset: int, pipeline: str, exit_code: int) -> RunSummary | None:
    """The newest `run` record appended to the manifest at `path` past byte `offset` that holds
    `pipeline`, as a summary; None when the run wrote none (it stopped before starting, e.g. on
    a config error)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in reversed(text.splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a full disk: the record is lost, not misread
        if not isinstance(record, dict) or record.get("kind") != "run":
            continue
        for p in record.get("pipelines", []):
            if isinstance(p, dict) and p.get("pipeline") == pipeline:
                return _summary(record, p, exit_code)
    return None


def _summary(record: dict[str, Any], p: dict[str, Any], exit_code: int) -> RunSummary:
    failed = exit_code != 0 or p.get("status") == "failed"
    return RunSummary(
        pipeline=str(p["pipeline"]), exit_code=exit_code,
        status="failed" if failed else str(p.get("status", "success")),
        rows_read=int(p.get("rows_read", 0)), rows_written=int(p.get("rows_written", 0)),
        dlq_rows=int(p.get("dlq_rows", 0)), rows_deleted=int(p.get("rows_deleted", 0)),
        batches=int(p.get("batches", 0)), destination=str(p.get("destination", "")), table=str(p.get("table", "")),
        quality=dict(p.get("quality") or {}), dlq_rows_by_rule=dict(p.get("dlq_rows_by_rule") or {}),
        positions_before=dict(p.get("positions_before") or {}), positions_after=dict(p.get("positions_after") or {}),
        schema_changes=list(p.get("schema_changes") or []), error=p.get("error"),
        started=record.get("started"), ended=record.get("ended"), duration_s=record.get("duration_s"))
