"""What each CLI command does, as coroutines returning an exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from conduitd.config import Config
from conduitd.destinations import make_destination
from conduitd.errors import ConduitError, ExitCode
from conduitd.runtime import Runtime
from conduitd.sources import check_source

log = logging.getLogger("conduitd")
CommandCoro = Coroutine[Any, Any, int]


async def run(config: Config, resources: Sequence[str], *, once: bool) -> int:
    runtime = Runtime(config, resources, once=once)
    started = time.monotonic()
    if once and sys.stderr.isatty():
        async with asyncio.TaskGroup() as tasks:
            progress = tasks.create_task(_show_progress(runtime, started))
            try:
                code = await runtime.run()
            finally:
                progress.cancel()
    else:
        code = await runtime.run()
    for status in runtime.statuses():
        log.info("pipeline %s %s: %d records read, %d rows written, %d to the DLQ, %d batches, %.1fs",
                 status.name, status.state, status.rows_read, status.rows_written, status.rows_rejected,
                 status.batches, time.monotonic() - started, extra={"pipeline": status.name})
    return int(code)


async def _show_progress(runtime: Runtime, started: float) -> None:
    """In a terminal, one self-updating line: rows so far and rows per second."""
    try:
        while True:
            await asyncio.sleep(0.5)
            rows = sum(s.rows_read for s in runtime.statuses())
            rejected = sum(s.rows_rejected for s in runtime.statuses())
            rate = rows / max(time.monotonic() - started, 1e-9)
            sys.stderr.write(f"\r{rows:,} records ({rejected:,} to the DLQ), {rate:,.0f} records/s   ")
            sys.stderr.flush()
    except asyncio.CancelledError:
        sys.stderr.write("\n")
        raise


async def validate(config: Config, resources: Sequence[str]) -> int:
    """Check every selected pipeline's source and destination; write nothing."""
    worst = ExitCode.OK
    for resource in config.resources:
        if resources and resource.name not in resources:
            continue
        source = config.source(resource.source)
        try:
            print(f"{resource.name}: source {source.name}: {await check_source(source)}")
        except ConduitError as exc:
            print(f"{resource.name}: source {source.name}: {exc}")
            worst = max(worst, exc.exit_code)
        destination = make_destination(config.destination(resource.destination))
        try:
            await destination.open()
            await destination.ping()
            print(f"{resource.name}: destination {resource.destination}: reachable")
        except ConduitError as exc:
            print(f"{resource.name}: destination {resource.destination}: {exc}")
            worst = max(worst, exc.exit_code)
        finally:
            await destination.close()
    print("ok" if worst == ExitCode.OK else "problems found")
    return int(worst)


async def show_checkpoints(config: Config, resources: Sequence[str], *, as_json: bool) -> int:
    rows = []
    for resource in config.resources:
        if resources and resource.name not in resources:
            continue
        destination = make_destination(config.destination(resource.destination))
        await destination.open()
        try:
            rows += await destination.list_checkpoints(resource.name)
        finally:
            await destination.close()
    if as_json:
        print(orjson.dumps([{"pipeline": r.pipeline, "partition": r.partition, "position": r.position,
                             "updated_at": r.updated_at} for r in rows], default=str,
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    for row in rows:
        print(f"{row.pipeline}\t{row.partition}\t{orjson.dumps(row.position).decode()}\t{row.updated_at}")
    if not rows:
        print("no checkpoints stored")
    return 0


async def reset_checkpoints(config: Config, resource_name: str, partition: str | None) -> int:
    resource = next(r for r in config.resources if r.name == resource_name)
    destination = make_destination(config.destination(resource.destination))
    await destination.open()
    try:
        count = await destination.reset_checkpoints(resource.name, partition)
    finally:
        await destination.close()
    print(f"removed {count} checkpoint(s) of {resource.name}; the next run starts those partitions over")
    return 0
