"""`conduit manifest`: the run history in the manifest file, one line per pipeline and run.

It reads the JSON lines conduitd appends to `service.manifest_path` (`conduitd.ops.manifest`:
one record per `--once` run, per interval and at the end in daemon mode, each with its
pipelines), and also a manifest the seed tool wrote (`{"version": ..., "runs": [...]}`), so a
migrating user's earlier history stays readable in the same table."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import orjson

from conduitd.errors import ConfigError
from conduitd.ops.manifest_entries import Entry, read_entries
from conduitd.oserrors import os_error_text


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
