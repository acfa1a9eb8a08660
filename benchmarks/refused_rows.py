"""The cost of rows the destination refuses, for 0% and 1% refused rows, side by side in one run:
isolating them by halving (conduitd before issue 8), by the COPY line the server names alone,
and with the screen first (now: one query finds the rows the catalog can tell). Rows are refused
by a CHECK constraint; each path writes into its own fresh table through the real PostgreSQL
destination (`Committer.prepare` + `Committer.commit`), so the DLQ rows and checkpoints are part of the
timed work.

    python benchmarks/refused_rows.py [--rows 200000] [--batch 50000] [--dsn ...]

Prints, per path: wall seconds and CPU seconds (this process; and the server backend's, read from
/proc when the server runs on this machine) per million rows, write attempts, rows refused. The
halving path is kept here only, for the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import conduitd.runtime.commit as commit_module
from conduitd.config import PipelineConfig, PostgresDestinationConfig
from conduitd.core.records import Chunk
from conduitd.core.schema import Column
from conduitd.destinations.base import RowsRefused, Transaction
from conduitd.destinations.postgres import PostgresDestination
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import Committer
from conduitd.runtime.isolate import Isolation, write_isolating

DEFAULT_DSN = os.environ.get("CONDUITD_TEST_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432/conduitd_test")
DDL = ("CREATE TABLE {} (id bigint PRIMARY KEY, v bigint CONSTRAINT v_not_negative CHECK (v >= 0), "
       "name varchar(16) NOT NULL, amount numeric(12,2), at timestamptz)")


async def halving(tx: Transaction, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                  payload: object | None) -> Isolation:
    """The isolation conduitd had before: halve under savepoints until refused rows stand alone."""
    result = Isolation()

    async def write(part: pa.Table, offset: int, encoded: object | None) -> None:
        if part.num_rows == 0:
            return
        result.attempts += 1
        try:
            async with tx.savepoint():
                await tx.write_rows(table, part, columns, key, encoded)
        except RowsRefused as refused:
            if part.num_rows == 1:
                result.refused.append((offset, refused.reason))
                return
            middle = part.num_rows // 2
            await write(part.slice(0, middle), offset, None)
            await write(part.slice(middle), offset + middle, None)

    await write(rows, 0, payload)
    return result


class _Unscreened:
    """The transaction without its screen: refused rows met by the write attempts alone."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def screen_rows(self, *args: Any) -> list[tuple[int, str]]:
        return []


async def named_row_only(tx: Transaction, *args: Any) -> Isolation:
    return await write_isolating(_Unscreened(tx), *args)  # type: ignore[arg-type]


PATHS = {"halving (old)": halving, "named row": named_row_only, "screen (now)": write_isolating}


def generate(rows: int, refused_share: float) -> pa.Table:
    rng = np.random.default_rng(18)
    v = np.ones(rows, dtype=np.int64)
    v[rng.choice(rows, int(rows * refused_share), replace=False)] = -1
    ids = np.arange(rows, dtype=np.int64)
    return pa.table({
        "id": ids, "v": v, "name": pa.array([f"customer {i % 997}" for i in range(rows)]),
        "amount": pa.array((ids % 100_000).astype(np.float64) / 100),
        "at": pa.array(1_700_000_000_000_000 + ids * 1000, pa.timestamp("us", tz="UTC"))})


def backend_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(path: str, rows: pa.Table, batch_rows: int, dsn: str, schema: str) -> dict[str, Any]:
    isolate = PATHS[path]
    attempts: list[int] = []

    async def counting(*args: Any) -> Isolation:
        result = await isolate(*args)
        attempts.append(result.attempts)
        return result
    commit_module.write_isolating = counting  # type: ignore[assignment]
    destination = PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}))
    pipeline = PipelineConfig.model_validate({"name": "orders", "source": "s", "destination": "pg"})
    await destination.open()
    try:
        await destination.setup(pipeline)
        pids = [destination.conn.get_server_pid()]  # the destination's own backend, no one else's
        before = {pid: backend_cpu(pid) for pid in pids}
        wall, cpu = time.perf_counter(), time.process_time()
        rejected = 0
        committer = Committer(destination, pipeline)
        for start in range(0, rows.num_rows, batch_rows):
            part = rows.slice(start, batch_rows)
            prior = None if start == 0 else {"offset": start}
            batch = build_batch([Chunk("p", prior, {"offset": start + part.num_rows}, part, (), 1)])
            result = await committer.commit(await committer.prepare(batch))
            rejected += result.dlq_rows
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = [(backend_cpu(pid) or 0.0) - (before[pid] or 0.0) for pid in pids if before[pid] is not None]
    finally:
        await destination.close()
        commit_module.write_isolating = write_isolating
    million = rows.num_rows / 1e6
    return {"path": path, "s_per_M": wall / million, "cpu_s_per_M": cpu / million,
            "server_cpu_s_per_M": sum(server) / million if server else None,
            "attempts": sum(attempts), "refused": rejected}


async def main(rows: int, batch_rows: int, dsn: str) -> None:
    schema = f"bench_refused_{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    results = []
    try:
        for share in (0.0, 0.01):
            data = generate(rows, share)
            for path in PATHS:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"; '
                                   + DDL.format(f'"{schema}".orders'))
                result = await run(path, data, batch_rows, dsn, schema)
                result["refused %"] = share * 100
                assert result["refused"] == int(rows * share), result
                results.append(result)
                print(result, flush=True)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    print(f"\n{rows:,} rows in batches of {batch_rows:,}; per million rows:")
    print(f"{'refused':>8} {'path':>14} {'wall s':>8} {'CPU s':>7} {'server CPU s':>13} {'attempts':>9}")
    for r in results:
        server = "-" if r["server_cpu_s_per_M"] is None else f"{r['server_cpu_s_per_M']:.1f}"
        print(f"{r['refused %']:>7.0f}% {r['path']:>14} {r['s_per_M']:>8.1f} {r['cpu_s_per_M']:>7.1f} "
              f"{server:>13} {r['attempts']:>9}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.batch, arguments.dsn))
