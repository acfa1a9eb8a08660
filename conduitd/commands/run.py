"""What each CLI command does, as coroutines returning an exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from conduitd.commands.outputs import check_targets
from conduitd.config import Config
from conduitd.errors import exit_code_of
from conduitd.ops.manifest import Manifest
from conduitd.oserrors import check_writable
from conduitd.runtime.supervisor import Runtime

log = logging.getLogger("conduitd")
CommandCoro = Coroutine[Any, Any, int]


async def run(config: Config, only: Sequence[str], *, once: bool) -> int:
    _check_outputs(config, only)
    runtime = Runtime(config, only, once=once)
    started = time.monotonic()
    path = config.service.manifest_path
    manifest = Manifest(path, mode="once" if once else "daemon", metrics=runtime.metrics) if path else None
    code: int | None = None
    try:
        async with asyncio.TaskGroup() as tasks:
            progress = tasks.create_task(_show_progress(runtime, started)) if once and sys.stderr.isatty() else None
            intervals = (tasks.create_task(_manifest_intervals(runtime, manifest, config.service.manifest_interval))
                         if manifest is not None and not once else None)
            try:
                code = int(await runtime.run())
            finally:
                for task in (progress, intervals):
                    if task is not None:
                        task.cancel()
    except BaseException as exc:
        code = exit_code_of(exc)
        raise
    finally:
        if manifest is not None:
            manifest.write(runtime.statuses(), exit_code=code, final=True)
        _summarise(runtime, started)
    return code


def _check_outputs(config: Config, only: Sequence[str]) -> None:
    """Files the run will append to must be writable before anything is read: found out after a
    commit, the data is in but the run ends in an error (and a daemon would die at its first
    interval)."""
    if config.service.manifest_path:
        check_writable(config.service.manifest_path, "service.manifest_path")
    for pipeline in config.resources:
        if (not only or pipeline.name in only) and pipeline.dlq.type == "file" and pipeline.dlq.path:
            check_writable(pipeline.dlq.path, f"resources[{pipeline.name}].dlq.path")
    check_targets(config, only)  # a SQLite `path` that is not a database: exit 2, as `validate` says


async def _manifest_intervals(runtime: Runtime, manifest: Manifest, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        manifest.write(runtime.statuses(), exit_code=None, final=False)


def _summarise(runtime: Runtime, started: float) -> None:
    for status in runtime.statuses():
        log.info("pipeline %s %s: %d records read, %d rows written, %d to the DLQ, %d batches, %.1fs",
                 status.name, status.state, status.rows_read, status.rows_written, status.dlq_rows,
                 status.batches, time.monotonic() - started, extra={"pipeline": status.name})


async def _show_progress(runtime: Runtime, started: float) -> None:
    """In a terminal, one self-updating line: rows so far and rows per second."""
    try:
        while True:
            await asyncio.sleep(0.5)
            rows = sum(s.rows_read for s in runtime.statuses())
            rejected = sum(s.dlq_rows for s in runtime.statuses())
            rate = rows / max(time.monotonic() - started, 1e-9)
            sys.stderr.write(f"\r{rows:,} records ({rejected:,} to the DLQ), {rate:,.0f} records/s   ")
            sys.stderr.flush()
    except asyncio.CancelledError:
        sys.stderr.write("\n")
        raise
