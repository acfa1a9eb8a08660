"""Benchmark: `batch.max_rows: auto` against fixed sizes, JSON lines files -> PostgreSQL.

    python benchmarks/auto_batch.py [--rows 2000000] [--fixed 500,5000,20000,50000]
                                    [--targets 2s,250ms] [--initial 500] [--repeat N] [--dsn DSN]

Generates N order events (the rows of `files_to_postgres.py`: ~330 bytes, 10 fields; seeded, not
timed) into one JSONL file, then, in this one process on one event loop (uvloop when installed),
loads them with the real pipeline (`Runtime(config, once=True).run()`, file source -> PostgreSQL
append, each path into its own fresh table with the same DDL) once per path:

* ``fixed_<n>``: `batch.max_rows: n`.
* ``auto_<target>``: `batch.max_rows: auto` from a deliberately bad start (`initial_rows` 500) with
  that `target_latency`.

Per path: rows/s, CPU seconds per million rows (this process and the PostgreSQL server), batches;
for auto also the sizes it chose in order and its commit latencies against the target. The
figure of merit is auto / best fixed (throughput; the issue asks for at least 0.8). Every path is
checked (row count, distinct ids, exact sum(amount)). A CHECKPOINT runs before each path; the path
order rotates on each repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.files_to_postgres import (
    DEFAULT_DSN,
    TABLE_DDL,
    CpuSnapshot,
    Dataset,
    event_loop_runner,
    generate,
    machine_info,
    result_header,
    wait_until_idle,
    write_result,
)
from conduitd.config import BatchConfig, Config, FileSourceConfig, PipelineConfig, PostgresDestinationConfig
from conduitd.core.units import parse_duration
from conduitd.runtime.supervisor import Runtime

DEFAULT_OUT = "benchmarks/results/auto_batch.json"


@dataclass
class Outcome:
    path: str
    seconds: float
    rows: int
    batches: int
    cpu: dict[str, float]
    sizes: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    target: float | None = None
    ok: bool = True
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def batch_settings(path: str, initial: int) -> dict[str, Any]:
    kind, _, value = path.partition("_")
    if kind == "fixed":
        return {"max_rows": int(value)}
    return {"max_rows": "auto", "initial_rows": initial, "target_latency": value}


async def run_path(dsn: str, schema: str, data: Dataset, path: str, initial: int, repeat: int) -> Outcome:
    """One load of every row by `path` into a fresh table (a pipeline name of its own per repeat, so
    no checkpoint of an earlier repeat is found)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{path}"')
        await conn.execute(TABLE_DDL.format(table=f'"{schema}"."{path}"'))
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    batch = BatchConfig.model_validate(batch_settings(path, initial))
    config = Config(
        sources=(FileSourceConfig(name="orders_files", type="file", path=str(data.path), format="jsonl"),),
        destinations=(PostgresDestinationConfig(name="pg", type="postgres", dsn=dsn, db_schema=schema),),
        resources=(PipelineConfig(name=f"{path}_{repeat}", source="orders_files", destination="pg", table=path,
                                  mode="append", batch=batch),),
    )
    runtime = Runtime(config, once=True)
    [pipeline] = runtime.pipelines
    pipeline.sizer.recent = deque()  # every batch, not the last 50: the benchmark reports them all
    cpu_before = CpuSnapshot.take()
    started = time.perf_counter()
    code = await runtime.run()
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.3)  # let the postmaster reap the backend: its CPU joins cutime
    cpu = CpuSnapshot.take().since(cpu_before, data.rows)
    status = runtime.statuses()[0]
    outcome = Outcome(path, seconds, status.rows_written, status.batches, cpu,
                      sizes=[o.records for o in pipeline.sizer.recent],
                      latencies=[o.seconds for o in pipeline.sizer.recent],
                      target=batch.target_latency if batch.adaptive else None)
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f'SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(amount) AS amount '
                                  f'FROM "{schema}"."{path}"')
    finally:
        await conn.close()
    outcome.checks = {"exit_code": int(code), "rows": row["n"], "distinct_ids": row["ids"],
                      "amount_sum": str(row["amount"]), "dlq_rows": status.dlq_rows}
    outcome.ok = (int(code) == 0 and row["n"] == row["ids"] == data.rows and row["amount"] == data.amount_sum
                  and status.dlq_rows == 0)
    return outcome


async def run_all(args: argparse.Namespace, paths: list[str],
                  data: Dataset) -> tuple[list[list[Outcome]], dict[str, Any]]:
    schema = f"bench_auto_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(args.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    runs: list[list[Outcome]] = []
    try:
        for repeat in range(args.repeat):
            order = paths[repeat % len(paths):] + paths[:repeat % len(paths)]
            outcomes = []
            for path in order:
                if args.wait_idle:
                    await wait_until_idle(args.wait_idle)
                outcome = await run_path(args.dsn, schema, data, path, args.initial, repeat)
                outcomes.append(outcome)
                print(line(outcome), flush=True)
            runs.append(outcomes)
    finally:
        if not args.keep_schema:
            conn = await asyncpg.connect(args.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return runs, machine_info(version, loop)


def line(o: Outcome) -> str:
    text = (f"{o.path:>14}: {o.rows_per_s:>9,.0f} rows/s  {o.seconds:6.2f}s  {o.batches:4d} batches  "
            f"CPU s per M rows: client {o.cpu['client_cpu_us_per_row']:5.2f} "
            f"postgres {o.cpu['postgres_cpu_us_per_row']:5.2f}"
            f"{'' if o.ok else '  CHECKS FAILED ' + str(o.checks)}")
    if o.target is not None:
        text += "\n" + " " * 16 + latency_text(o)
    return text


def latency_text(o: Outcome) -> str:
    """Sizes chosen and commit latency against the target, over the batches after the climb
    (from the first one within the band) and excluding the last (the source's end)."""
    settled = settled_latencies(o)
    sizes = " ".join(f"{s // 1000}k" if s >= 1000 else str(s) for s in o.sizes[:12])
    more = " ..." if len(o.sizes) > 12 else ""
    if not settled:
        return f"sizes {sizes}{more}; never reached the target band"
    return (f"sizes {sizes}{more}; settled size median {statistics.median(settled_sizes(o)):,.0f}; "
            f"commit latency after the climb: median {statistics.median(settled):.3f}s, max {max(settled):.3f}s "
            f"(target {o.target:g}s, median/target {statistics.median(settled) / (o.target or 1):.2f})")


def _settled_from(o: Outcome) -> int | None:
    target = o.target or 0
    body = o.latencies[:-1]
    return next((i for i, s in enumerate(body) if s >= 0.7 * target), None)


def settled_latencies(o: Outcome) -> list[float]:
    start = _settled_from(o)
    return [] if start is None else o.latencies[start:-1]


def settled_sizes(o: Outcome) -> list[int]:
    start = _settled_from(o)
    return [] if start is None else o.sizes[start:-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000, help="events to generate (default 2,000,000)")
    parser.add_argument("--fixed", default="500,5000,20000,50000", help="fixed sizes to run")
    parser.add_argument("--targets", default="2s,250ms", help="target_latency of each auto path")
    parser.add_argument("--initial", type=int, default=500, help="initial_rows of the auto paths (default 500)")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--repeat", type=int, default=1, help="run every path this many times; best is reported")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each path, wait up to this long for the machine to be idle (shared hosts)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--keep-schema", action="store_true")
    args = parser.parse_args(argv)
    for target in args.targets.split(","):
        parse_duration(target)
    paths = [f"fixed_{int(n)}" for n in args.fixed.split(",")] + [f"auto_{t}" for t in args.targets.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-"))
    try:
        t0 = time.perf_counter()
        data = generate(tmp, args.rows, args.seed)
        print(f"generated {data.rows:,} rows ({data.nbytes / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        runs, machine = event_loop_runner()(run_all(args, paths, data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {p: max((o for run in runs for o in run if o.path == p), key=lambda o: o.rows_per_s) for p in paths}
    fixed = [best[p] for p in paths if p.startswith("fixed_")]
    top = max(fixed, key=lambda o: o.rows_per_s)
    print(f"\nbest of {args.repeat}: best fixed is {top.path} at {top.rows_per_s:,.0f} rows/s")
    summary: dict[str, Any] = {}
    for path in paths:
        o = best[path]
        summary[path] = {"rows_per_s": round(o.rows_per_s), "vs_best_fixed": round(o.rows_per_s / top.rows_per_s, 3),
                         "batches": o.batches, "cpu": o.cpu}
        if o.target is not None:
            settled = settled_latencies(o)
            summary[path].update(target_latency=o.target, sizes=o.sizes, commit_seconds=[round(s, 4) for s in
                                                                                         o.latencies],
                                 settled_latency_median=round(statistics.median(settled), 4) if settled else None)
            print(f"  {path}: auto / best fixed = {o.rows_per_s / top.rows_per_s:.2f} "
                  f"({'meets' if o.rows_per_s >= 0.8 * top.rows_per_s else 'BELOW'} the 0.8 goal); {latency_text(o)}")
        else:
            print(f"  {path}: {o.rows_per_s / top.rows_per_s:.2f} of the best fixed")
    write_result(args.out, {
        **result_header("auto_batch", data), "repeat": args.repeat, "initial_rows": args.initial, "paths": summary,
        "runs": [[{"path": o.path, "seconds": round(o.seconds, 3), "rows_per_s": round(o.rows_per_s),
                   "batches": o.batches, "ok": o.ok, "checks": o.checks, "cpu": o.cpu} for o in run] for run in runs],
        "machine": machine,
    })
    return 0 if all(o.ok for run in runs for o in run) else 1


if __name__ == "__main__":
    sys.exit(main())
