"""Bulk writes into MySQL/MariaDB, side by side in one run, each into its own fresh InnoDB table
and checked value by value against what was sent (NULLs, empty strings, quotes and backslashes,
unicode, binary with every byte, decimals, doubles, timestamps):

    executemany   asyncmy's `executemany` of a one-row INSERT (it folds rows into multi-row
                  INSERTs of ~1 MB; every value escaped by the driver from a Python object)
    literals      conduitd's path: the VALUES text built column by column with Arrow compute
                  (`conduitd.destinations.mysql.literals`), multi-row INSERTs of 4 MiB
    load_data     `LOAD DATA LOCAL INFILE` of a CSV written by Arrow (null_string NULL, every
                  other value quoted, ESCAPED BY ''), booleans as 1/0, binary as hex via SET UNHEX

    python benchmarks/mysql_bulk.py [--rows 200000] [--host 127.0.0.1] [--port 3306] [--user root]

Prints, per path: rows/s, CPU seconds per million rows of this process and of the server
(read from /proc when it runs on this machine), and whether every value read back equal. Also
whether a duplicate key in LOAD DATA LOCAL is refused (the server cannot stop a LOCAL transfer:
MySQL and MariaDB then skip such rows with a warning instead of failing).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import decimal
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conduitd.destinations.mysql.dialect import column_for, quote
from conduitd.destinations.mysql.literals import encode_values

DB = "conduitd_bench_bulk"
COLUMNS = ("id", "name", "note", "amount", "score", "flag", "at", "raw")


def make_rows(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    words = np.array(["plain", "it's", 'say "hi"', "back\\slash", "naïve ☃ 日本", "", "tab\there", "line\nbreak",
                      "NULL", "\\N", "comma,inside"])
    names = pa.array(words[rng.integers(0, len(words), n)].tolist())
    notes = pa.array([None if i % 7 == 0 else ("" if i % 7 == 1 else f"note {i}") for i in range(n)], pa.string())
    amounts = pa.array([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-10**9, 10**9, n)],
                       pa.decimal128(12, 2))
    scores = pa.array(rng.normal(size=n) * 10.0 ** rng.integers(-5, 5, n))
    flags = pa.array([None if i % 11 == 0 else bool(i % 2) for i in range(n)], pa.bool_())
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    at = pa.array(start.timestamp() * 1e6 + rng.integers(0, 10**13, n), pa.int64()).cast(
        pa.timestamp("us", tz="UTC"))
    raw = pa.array([bytes([(i + k) % 256 for k in range(i % 9)]) if i % 5 else None for i in range(n)], pa.binary())
    return pa.table([pa.array(np.arange(n, dtype=np.int64)), names, notes, amounts, scores, flags, at, raw],
                    names=list(COLUMNS))


def server_cpu() -> float:
    """CPU seconds the server process has used (0 when it is not on this machine)."""
    try:
        pid = subprocess.run(["pidof", "mariadbd", "mysqld"], capture_output=True, text=True).stdout.split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, OSError, ValueError):
        return 0.0


async def connect(args: argparse.Namespace) -> Any:
    import asyncmy

    conn = await asyncmy.connect(host=args.host, port=args.port, user=args.user, password=args.password,
                                 autocommit=True, charset="utf8mb4")
    conn.host, conn.port, conn.user, conn.password = args.host, args.port, args.user, args.password
    async with conn.cursor() as cursor:
        await cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
                             "time_zone = '+00:00'")
    return conn


async def execute(conn: Any, sql: str | bytes, params: Any = None) -> int:
    async with conn.cursor() as cursor:
        return int(await cursor.execute(sql, params))


async def fresh_table(conn: Any, name: str, columns: list[Any]) -> str:
    table = f"{quote(DB)}.{quote(name)}"
    parts = ", ".join(f"{quote(c.name)} {c.sql}" for c in columns)
    await execute(conn, f"CREATE TABLE {table} ({parts}, PRIMARY KEY (`id`)) ENGINE=InnoDB "
                        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    return table


async def via_executemany(conn: Any, table: str, rows: pa.Table, columns: list[Any]) -> None:
    names = ", ".join(quote(c) for c in COLUMNS)
    values = [rows.column(i).to_pylist() for i in range(rows.num_columns)]
    at = COLUMNS.index("at")
    values[at] = [v and v.replace(tzinfo=None) for v in values[at]]
    async with conn.cursor() as cursor:
        await cursor.execute("START TRANSACTION")
        await cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                                 list(zip(*values, strict=True)))
        await cursor.execute("COMMIT")


async def via_literals(conn: Any, table: str, rows: pa.Table, columns: list[Any]) -> None:
    encoded = encode_values(rows, columns)
    head = f"INSERT INTO {table} ({', '.join(quote(c) for c in COLUMNS)}) VALUES ".encode()
    await execute(conn, "START TRANSACTION")
    for _, _, body in encoded.chunks(0, encoded.rows):
        await execute(conn, head + body)
    await execute(conn, "COMMIT")


def csv_file(rows: pa.Table, path: str) -> None:
    hexed = [pc.if_else(pc.is_null(v), pa.scalar(None, pa.string()),
                        pa.array([x.hex() if x is not None else None for x in v.to_pylist()], pa.string()))
             if pa.types.is_binary(v.type) else
             pc.strftime(v.cast(pa.timestamp("us")), format="%Y-%m-%d %H:%M:%S") if pa.types.is_timestamp(v.type) else
             v.cast(pa.int8()) if pa.types.is_boolean(v.type) else v for v in rows.columns]
    pacsv.write_csv(pa.table(hexed, names=rows.column_names), path,
                    pacsv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL"))


async def via_load_data(conn: Any, table: str, rows: pa.Table, columns: list[Any]) -> None:
    """Through the `mariadb` command-line client: asyncmy 0.2.18 cannot send a LOCAL file (its
    LOAD DATA LOCAL handler fails with a TypeError and leaves the protocol out of step)."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        csv_file(rows, handle.name)
        targets = ", ".join("@raw" if c == "raw" else quote(c) for c in COLUMNS)
        statement = (f"SET time_zone = '+00:00'; SET sql_mode = 'STRICT_ALL_TABLES'; START TRANSACTION; "
                     f"LOAD DATA LOCAL INFILE '{handle.name}' INTO TABLE {table} CHARACTER SET utf8mb4 "
                     "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                     f"({targets}) SET `raw` = UNHEX(@raw); SHOW WARNINGS; COMMIT")
        done = await asyncio.to_thread(subprocess.run, [
            "mariadb", "--local-infile=1", "-h", conn.host, "-P", str(conn.port), "-u", conn.user, "-e", statement],
            capture_output=True, text=True, env={**os.environ, "MYSQL_PWD": conn.password})
        if done.returncode:
            raise RuntimeError(done.stderr.strip())
        if done.stdout.strip():
            print("  LOAD DATA warnings:", done.stdout.strip().splitlines()[1:3])


async def read_back(conn: Any, table: str) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(f"SELECT {', '.join(quote(c) for c in COLUMNS)} FROM {table} ORDER BY `id`")
        return list(await cursor.fetchall())


def expected(rows: pa.Table) -> list[tuple[Any, ...]]:
    values = [rows.column(i).to_pylist() for i in range(rows.num_columns)]
    at, flag = COLUMNS.index("at"), COLUMNS.index("flag")
    values[at] = [v and v.replace(tzinfo=None) for v in values[at]]
    values[flag] = [None if v is None else int(v) for v in values[flag]]
    return list(zip(*values, strict=True))


async def duplicate_refused(conn: Any, columns: list[Any], rows: pa.Table) -> str:
    table = await fresh_table(conn, "dup", columns)
    twice = pa.concat_tables([rows.slice(0, 3), rows.slice(1, 1)])
    try:
        await via_load_data(conn, table, twice, columns)
    except RuntimeError as exc:
        return f"refused ({exc})"
    count = (await read_back(conn, table)).__len__()
    return f"NOT refused: {count} of 4 rows loaded, the duplicate skipped silently (a warning only)"


async def main(args: argparse.Namespace) -> None:
    rows = make_rows(args.rows)
    columns = [column_for(f.name, f.type) for f in rows.schema]
    conn = await connect(args)
    try:
        await execute(conn, f"DROP DATABASE IF EXISTS {quote(DB)}")
        await execute(conn, f"CREATE DATABASE {quote(DB)}")
        want = expected(rows)
        print(f"{args.rows} rows, columns {', '.join(f'{c.name} {c.sql}' for c in columns)}")
        for name, path in (("executemany", via_executemany), ("literals", via_literals),
                           ("load_data", via_load_data)):
            table = await fresh_table(conn, name, columns)
            cpu, server, wall = time.process_time(), server_cpu(), time.perf_counter()
            await path(conn, table, rows, columns)
            wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, server_cpu() - server
            got = await read_back(conn, table)
            wrong = sum(1 for a, b in zip(got, want, strict=False) if a != b) + abs(len(got) - len(want))
            per_million = 1e6 / args.rows
            print(f"{name:12s} {args.rows / wall:10,.0f} rows/s  client CPU {cpu * per_million:6.2f} s/M rows  "
                  f"server CPU {server * per_million:6.2f} s/M rows  "
                  f"{'exact' if not wrong else f'{wrong} rows differ'}")
        print("LOAD DATA LOCAL with a duplicate key:", await duplicate_refused(conn, columns, rows))
    finally:
        await execute(conn, f"DROP DATABASE IF EXISTS {quote(DB)}")
        conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    asyncio.run(main(parser.parse_args()))
