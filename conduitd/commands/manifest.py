"""`conduit manifest`: the run history in the manifest file, one line per pipeline and run.

It reads the JSON lines conduitd appends to `service.manifest_path` (`conduitd.ops.manifest`:
one record per `--once` run, per interval and at the end in daemon mode, each with its
pipelines), and also a manifest the seed tool wrote (`{"version": ..., "runs": [...]}`), so a
migrating user's earlier history stays readable in the same table."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from conduitd.errors import ConfigError
from conduitd.oserrors import os_error_text


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


async def show_manifest(path: str, *, pipelines: Sequence[str], failed: bool, as_json: bool) -> int:
    entries = [e for e in read_entries(await _read(path))
               if (not pipelines or e.pipeline in pipelines) and (not failed or e.status == "failed")]
    if as_json:
        sys.stdout.write(orjson.dumps([asdict(e) for e in entries], option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print(path, entries, filtered=bool(pipelines or failed))
    return 0


async def _read(path: str) -> str:
    try:
        return await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manifest: {os_error_text(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a manifest (not UTF-8 text)") from None


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


def _print(path: str, entries: Sequence[Entry], *, filtered: bool) -> None:
    if not entries:
        print(f"{path}: no {'matching ' if filtered else ''}runs")
        return
    rows = [(e.started[:19].replace("T", " "), e.pipeline, f"{e.source}->{e.destination}", str(e.rows_read),
             str(e.rows_written), str(e.dlq_rows), f"{e.duration_s:.1f}s", e.status) for e in entries]
    header = ("started", "pipeline", "source->destination", "read", "written", "dlq", "duration", "status")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    print("  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)).rstrip())
    for row, entry in zip(rows, entries, strict=True):
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
        if entry.error:
            print(f"    error: {entry.error}")
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
