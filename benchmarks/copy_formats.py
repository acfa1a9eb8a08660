"""Binary COPY against CSV COPY of the same Arrow rows, through conduitd's own encoders: the
measurement behind the PostgreSQL destination's choice of binary (CSV is its fallback for column
types without a binary encoder).

    python benchmarks/copy_formats.py [--rows 200000] [--dsn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.files_to_postgres import DEFAULT_DSN, TABLE_DDL, generate
from conduitd.core.decode import decode_jsonl
from conduitd.core.schema import conform
from conduitd.destinations.postgres.ddl import table_columns
from conduitd.destinations.postgres.dialect import Payload, PostgresDialect

BATCH = 50_000


async def main(rows: int, dsn: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        data = generate(Path(directory), rows, seed=1)
        table, _ = decode_jsonl(data.path.read_bytes(), "p", lambda offset: offset)
    schema = f"bench_copy_formats_{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(TABLE_DDL.format(table=f'"{schema}".t'))
        live = await table_columns(conn, schema, "t")
        assert live is not None
        rows_, _, _ = conform(table, live)
        columns = [live[name] for name in rows_.column_names]
        dialect = PostgresDialect(schema)
        rates: dict[str, float] = {}
        for fmt in ("binary", "csv", "binary", "csv"):
            await conn.execute(f'TRUNCATE "{schema}".t')
            started = time.perf_counter()
            for first in range(0, rows_.num_rows, BATCH):
                part = rows_.slice(first, BATCH)
                if fmt == "binary":
                    payload = dialect.encode(part, columns)
                else:
                    buffer = io.BytesIO()
                    pacsv.write_csv(part, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
                    payload = Payload(buffer.getvalue(), "csv")
                options = {"format": "csv", "null": ""} if fmt == "csv" else {"format": "binary"}
                async with conn.transaction():
                    await conn.copy_to_table("t", schema_name=schema, columns=[c.name for c in columns],
                                             source=io.BytesIO(payload.data), **options)
            rate = rows_.num_rows / (time.perf_counter() - started)
            rates[fmt] = max(rates.get(fmt, 0.0), rate)
            print(f"  {fmt:<6} {rate:>10,.0f} rows/s (encode + COPY, {BATCH:,}-row transactions)")
        print(f"binary / csv: {rates['binary'] / rates['csv']:.2f}")
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.dsn))
