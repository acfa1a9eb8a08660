"""The entries of a run manifest, read back: a conduitd manifest (JSON lines, `ops.manifest`) or
the seed tool's (one JSON document with `runs`); for `conduitd manifest` and the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from conduitd.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One pipeline in one run (or daemon interval)."""

    started: str
    ended: str
    kind: str
    """run (a --once run), interval or final (daemon mode), seed (a record of the seed tool)."""
    pipeline: str
    source: str
    destination: str
    status: str
    """success, partial (some rows went to the DLQ), failed."""
    rows_read: int
    rows_written: int
    dlq_rows: int
    duration_s: float
    exit_code: int | None
    error: str | None


def read_entries(text: str) -> list[Entry]:
    """The entries of a conduitd manifest (JSON lines) or of the seed tool's (one JSON document
    with `runs`), oldest first."""
    try:
        whole = orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("runs"), list):
        return [_seed_entry(run) for run in whole["runs"] if isinstance(run, dict)]
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ConfigError(f"manifest line {number}: not a JSON record") from None
        if not isinstance(record, dict) or not isinstance(record.get("pipelines"), list):
            raise ConfigError(f"manifest line {number}: not a conduitd manifest record (no 'pipelines')")
        entries += _entries(record)
    return entries


def _entries(record: dict[str, Any]) -> list[Entry]:
    pipelines = [p for p in record["pipelines"] if isinstance(p, dict)]
    run_failed = record.get("status") == "failed"
    # A run that failed with no pipeline marked failed (a quality stop, a config error met at
    # start) failed for all of its pipelines that did not finish.
    blame_all = run_failed and not any(p.get("status") == "failed" for p in pipelines)
    return [Entry(
        started=str(record.get("started", "")), ended=str(record.get("ended", "")), kind=str(record.get("kind", "")),
        pipeline=str(p.get("pipeline", "")), source=str(p.get("source", "")),
        destination=f"{p.get('destination', '')}.{p.get('table', '')}",
        status="failed" if blame_all and p.get("state") not in ("done", "stopped") else str(p.get("status", "")),
        rows_read=int(p.get("rows_read", 0)), rows_written=int(p.get("rows_written", 0)),
        dlq_rows=int(p.get("dlq_rows", 0)), duration_s=float(record.get("duration_s", 0.0)),
        exit_code=record.get("exit_code"), error=p.get("error")) for p in pipelines]


def _seed_entry(run: dict[str, Any]) -> Entry:
    return Entry(
        started=str(run.get("started_at", "")), ended=str(run.get("completed_at", "")), kind="seed",
        pipeline=str(run.get("pipeline_name", "")), source=str(run.get("source_type", "")),
        destination=str(run.get("destination_type", "")), status=str(run.get("status", "")),
        rows_read=int(run.get("records_read", 0)), rows_written=int(run.get("records_written", 0)),
        dlq_rows=int(run.get("records_failed", 0)), duration_s=float(run.get("duration_seconds", 0.0)),
        exit_code=None, error=run.get("error_message"))


