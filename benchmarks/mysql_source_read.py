"""Reading a MySQL/MariaDB table into Arrow, side by side in one run, over the same InnoDB table
(200,000 rows of BIGINT, DATETIME(6), DECIMAL(12,2), VARCHAR, INT, TINYINT(1), DOUBLE, BLOB):

    conduitd      the source's reader (`MysqlReader.read`): keyset SQL in batches of `--batch`
                  rows, values as the server's text, one flat Arrow array cut into columns
    objects       asyncmy's default decoders (Decimal, datetime per value), rows zipped into
                  columns and handed to `pa.array` with the same types, one SELECT
    fetch only    asyncmy streaming the rows as text, nothing built (the driver's ceiling)

    python benchmarks/mysql_source_read.py [--rows 200000] [--batch 50000] [--host 127.0.0.1] [--port 3306]

Prints rows/s and CPU seconds of this process per million rows, and checks that the conduitd
path and the objects path give equal tables.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncmy
import pyarrow as pa
from asyncmy.cursors import SSCursor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conduitd.config import PipelineConfig
from conduitd.sources.tables.mysql import MysqlReader, _decoders_off
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig

COLUMNS = "id, ts, amount, name, qty, flag, ratio, raw"


async def execute(conn: Any, sql: str) -> None:
    async with conn.cursor() as cursor:
        await cursor.execute(sql)


async def make_table(conn: Any, database: str, rows: int) -> None:
    await execute(conn, f"CREATE DATABASE `{database}`")
    await execute(conn, f"""CREATE TABLE `{database}`.src (id BIGINT PRIMARY KEY, ts DATETIME(6), amount DECIMAL(12,2),
        name VARCHAR(40), qty INT, flag TINYINT(1), ratio DOUBLE, raw BLOB, KEY (ts)) ENGINE=InnoDB""")
    await execute(conn, f"""INSERT INTO `{database}`.src SELECT seq, '2026-01-01' + INTERVAL seq * 1000 MICROSECOND,
        ROUND(seq / 7, 2), CONCAT('name-', seq, ' ☃'), seq % 1000, seq % 2, seq / 3e0, UNHEX(HEX(seq))
        FROM `{database}`.seq_1_to_{rows}""")


async def conduitd_path(config: MysqlSourceConfig, database: str, batch: int) -> pa.Table:
    pipeline = PipelineConfig(name="bench", source="my", destination="none", source_table=f"{database}.src")
    reader = MysqlReader(config, pipeline)
    await reader.connect()
    try:
        plan = await reader.plan()
        parts: list[pa.Table] = []
        position: dict[str, Any] | None = {"pass": 1, "key": None, "done": False}
        while True:
            read = await reader.read(plan, position, batch, "bench")
            assert read is not None
            if read.count:
                parts.append(read.rows)
            if read.last is None or read.count < batch:
                break
            position = plan.position_after(read.last, position)
        return pa.concat_tables(parts)
    finally:
        await reader.close()


async def objects_path(config: MysqlSourceConfig, database: str, types: list[pa.DataType]) -> pa.Table:
    conn = await asyncmy.connect(host=config.host, port=config.port, user=config.user, password="",
                                 autocommit=True)
    try:
        await execute(conn, "SET time_zone = '+00:00'")
        async with conn.cursor(SSCursor) as cursor:
            await cursor.execute(f"SELECT {COLUMNS} FROM `{database}`.src ORDER BY id")
            rows: list[tuple[Any, ...]] = []
            while block := await cursor.fetchmany(10_000):
                rows.extend(block)
        columns = list(zip(*rows, strict=True))
        names = COLUMNS.split(", ")
        return pa.table({n: pa.array([None if v is None else bool(v) for v in c] if t == pa.bool_() else c, t)
                         for n, c, t in zip(names, columns, types, strict=True)})
    finally:
        conn.close()


async def fetch_only(config: MysqlSourceConfig, database: str) -> int:
    conn = await asyncmy.connect(host=config.host, port=config.port, user=config.user, password="",
                                 autocommit=True, conv=_decoders_off())
    try:
        count = 0
        async with conn.cursor(SSCursor) as cursor:
            await cursor.execute(f"SELECT {COLUMNS} FROM `{database}`.src ORDER BY id")
            while block := await cursor.fetchmany(10_000):
                count += len(block)
        return count
    finally:
        conn.close()


async def measure(name: str, rows: int, work: Callable[[], Awaitable[Any]]) -> Any:
    best: tuple[float, float] | None = None
    result = None
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        result = await work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = (wall, cpu) if best is None or wall < best[0] else best
    assert best is not None
    print(f"{name:<12} {rows / best[0]:>12,.0f} rows/s   {best[1] / rows * 1e6:6.2f} CPU s per million rows "
          f"(best of 3: {best[0]:.2f} s)")
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    args = parser.parse_args()
    database = f"conduitd_bench_{uuid.uuid4().hex[:8]}"
    config = MysqlSourceConfig(name="my", type="mysql", host=args.host, port=args.port, user=args.user,
                               database="mysql")
    admin = await asyncmy.connect(host=args.host, port=args.port, user=args.user, password="", autocommit=True)
    try:
        await make_table(admin, database, args.rows)
        print(f"{args.rows:,} rows, batches of {args.batch:,} rows for conduitd")
        ours = await measure("conduitd", args.rows, lambda: conduitd_path(config, database, args.batch))
        types = [f.type for f in ours.schema]
        theirs = await measure("objects", args.rows, lambda: objects_path(config, database, types))
        await measure("fetch only", args.rows, lambda: fetch_only(config, database))
        assert ours.num_rows == args.rows, ours.num_rows
        assert ours.equals(theirs), "the conduitd path and the objects path differ"
        print("conduitd's table equals the objects path's, value by value:", ", ".join(map(str, types)))
    finally:
        await execute(admin, f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


if __name__ == "__main__":
    asyncio.run(main())
