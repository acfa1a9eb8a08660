"""Benchmark: JSON lines files -> PostgreSQL, conduitd end to end against raw asyncpg baselines.

    python benchmarks/files_to_postgres.py [--rows 1000000] [--dsn DSN] [--out FILE] [--repeat N]

Generates N order events (~330 bytes, 10 fields; seeded, not timed) into one JSONL file, then, in
this one process and on one event loop (uvloop when installed), loads them into PostgreSQL by
several paths, each into its own fresh logged table with the same DDL (primary key on id) in a
dedicated schema that is dropped at the end:

* ``conduitd``: the real pipeline (file source -> PostgreSQL append, batch max_rows 50000) through
  ``Runtime(config, once=True).run()``; timed from start to exit. Reads and decodes the file.
* ``copy_records``: asyncpg ``copy_records_to_table`` of the same rows pre-decoded (not timed) into
  typed Python tuples, in 50k-row transactions that also update a checkpoint row.
* ``copy_binary_preencoded``: asyncpg ``copy_to_table(format="binary")`` of buffers pre-encoded
  (not timed) by conduitd's ``encode_copy_binary``, same transactions: the server's ceiling.
* ``executemany``: asyncpg ``executemany`` INSERT of the same tuples, same transactions: the naive
  baseline.
* ``conduitd_upsert`` and ``upsert_ceiling`` (``--upsert``): the table first holds all N rows
  (loaded untimed), then the same N keys with other values (a second seeded generation) are upserted:
  by conduitd (``mode: upsert``, ``unique_key: [id]``) and by the ceiling, per 50k-row transaction a
  binary COPY of pre-encoded buffers into a temporary staging table, ``INSERT ... SELECT ... ON
  CONFLICT (id) DO UPDATE`` and the checkpoint update.

Every path is verified (row count, exact ``sum(amount)`` against the Decimal sum computed at
generation); conduitd's table is also compared row for row with the ``copy_records`` table.
Results and machine info are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pyarrow as pa

import conduitd
from conduitd.config import (
    BatchConfig,
    Config,
    FileSourceConfig,
    PipelineConfig,
    PostgresDestinationConfig,
)
from conduitd.core.quality import QualityCheck
from conduitd.destinations.postgres.copy_binary import encode_copy_binary
from conduitd.runtime.supervisor import Runtime

if __package__ in (None, ""):  # run as a script: `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pg_backends import BackendCpu
from benchmarks.thread_cpu import ThreadCpu, print_threads
from benchmarks.timeline import BatchTimeline

DEFAULT_DSN = os.environ.get("CONDUITD_TEST_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432/conduitd_test")
DEFAULT_OUT = "benchmarks/results/files_to_postgres.json"
DEFAULT_PATHS = ("conduitd", "conduitd_checked", "copy_records", "copy_binary_preencoded", "executemany")
UPSERT_PATHS = ("conduitd_upsert", "upsert_ceiling")
PATHS = DEFAULT_PATHS + UPSERT_PATHS

COLUMNS = ("id", "order_uuid", "customer", "amount", "currency", "created_at", "updated_at", "details", "paid",
           "quantity")
PG_TYPES = ("int8", "uuid", "text", "numeric", "bpchar", "timestamptz", "timestamptz", "jsonb", "bool", "int4")
# autovacuum is off on every benchmark table so one path's aftermath cannot slow the next.
TABLE_DDL = """CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    order_uuid uuid NOT NULL,
    customer text NOT NULL,
    amount numeric(12,2) NOT NULL,
    currency char(3) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    details jsonb NOT NULL,
    paid boolean NOT NULL,
    quantity integer NOT NULL
) WITH (autovacuum_enabled = off)"""
ARROW_SCHEMA = pa.schema([
    ("id", pa.int64()), ("order_uuid", pa.string()), ("customer", pa.string()), ("amount", pa.decimal128(12, 2)),
    ("currency", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
    ("updated_at", pa.timestamp("us", tz="UTC")), ("details", pa.string()), ("paid", pa.bool_()),
    ("quantity", pa.int32()),
])

CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY", "SEK", "NOK", "DKK")
# The quality rules of the `conduitd_checked` path: five checks that every generated row passes,
# with schema evolution on (auto, the default), so the path measures their cost, not rejects.
CHECKS = (
    QualityCheck.model_validate({"column": "id", "check": "not_null", "action": "fail"}),
    QualityCheck.model_validate({"column": "id", "check": "unique", "action": "dlq"}),
    QualityCheck.model_validate({"column": "customer", "check": "regex", "pattern": "[^<]+ <[^@]+@[^>]+>",
                                 "action": "dlq"}),
    QualityCheck.model_validate({"column": "amount", "check": "range", "min": 0, "max": 1_000_000,
                                 "action": "warn"}),
    QualityCheck.model_validate({"column": "currency", "check": "in_list", "values": list(CURRENCIES),
                                 "action": "dlq"}),
)
CHANNELS = ("web", "ios", "android", "store", "phone")
NOTES = ("", "gift", "fragile", "leave at door")
FIRST = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus")
LAST = ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Data generation (not timed)


@dataclass
class Dataset:
    path: Path
    rows: int
    nbytes: int
    amount_sum: Decimal
    quantity_sum: int
    paid_count: int


def generate(directory: Path, rows: int, seed: int) -> Dataset:
    """Write `rows` JSON lines of order events into directory/orders.jsonl, deterministically."""
    rng = random.Random(seed)
    path = directory / "orders.jsonl"
    cents_total = quantity_total = paid_count = 0
    dumps = orjson.dumps
    with open(path, "wb", buffering=8 << 20) as out:
        lines: list[bytes] = []
        for i in range(1, rows + 1):
            cents = rng.randrange(1, 500_000_00)
            quantity = rng.randrange(1, 20)
            paid = rng.random() < 0.7
            created_ms = i * 1000 + rng.randrange(1000)
            created = EPOCH + timedelta(milliseconds=created_ms)
            updated = EPOCH + timedelta(seconds=created_ms // 1000 + rng.randrange(1, 86_400))
            customer_no = rng.randrange(1_000_000)
            record = {
                "id": i,
                "order_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer": f"{rng.choice(FIRST)} {rng.choice(LAST)} <c{customer_no}@example.com>",
                # cents / 100 is the double nearest the decimal; orjson writes its shortest form (e.g. 123.4)
                "amount": cents / 100,
                "currency": rng.choice(CURRENCIES),
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z",
                "updated_at": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "details": {
                    "sku": f"SKU-{rng.randrange(100_000):05d}",
                    "channel": rng.choice(CHANNELS),
                    "priority": rng.randrange(5),
                    "note": rng.choice(NOTES),
                },
                "paid": paid,
                "quantity": quantity,
            }
            lines.append(dumps(record))
            cents_total += cents
            quantity_total += quantity
            paid_count += paid
            if len(lines) == 10_000:
                out.write(b"\n".join(lines) + b"\n")
                lines = []
        if lines:
            out.write(b"\n".join(lines) + b"\n")
    return Dataset(path, rows, path.stat().st_size, Decimal(cents_total).scaleb(-2), quantity_total, paid_count)


Record = tuple[int, str, str, Decimal, str, datetime, datetime, str, bool, int]


def decode_records(path: Path) -> list[Record]:
    """The file as typed tuples, as a hand-written decoder would produce them (not timed)."""
    records: list[Record] = []
    loads, dumps, parse = orjson.loads, orjson.dumps, datetime.fromisoformat
    with open(path, "rb") as handle:
        for line in handle:
            d = loads(line)
            records.append((d["id"], d["order_uuid"], d["customer"], Decimal(repr(d["amount"])), d["currency"],
                            parse(d["created_at"]), parse(d["updated_at"]), dumps(d["details"]).decode(),
                            d["paid"], d["quantity"]))
    return records


def encode_batches(records: Sequence[Record], batch_rows: int) -> list[bytes]:
    """Binary COPY payloads of every batch, by conduitd's encoder from an Arrow table (not timed)."""
    columns: list[Sequence[Any]] = list(zip(*records, strict=True)) if records else [[] for _ in COLUMNS]
    table = pa.Table.from_arrays([pa.array(values, type=f.type) for values, f in zip(columns, ARROW_SCHEMA,
                                                                                        strict=True)],
                                 schema=ARROW_SCHEMA)
    return [encode_copy_binary(table.slice(start, batch_rows), PG_TYPES)
            for start in range(0, table.num_rows, batch_rows)]


# ---------------------------------------------------------------------------------------------
# The paths (timed)


@dataclass
class Outcome:
    path: str
    seconds: float
    rows: int
    batches: int
    checks: dict[str, Any] = field(default_factory=dict)
    ok: bool = True

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far: the whole machine (busy), this process, every `postgres` process."""

    machine: float
    client: float
    postgres: float

    @staticmethod
    def take() -> CpuSnapshot:
        times = os.times()
        return CpuSnapshot(_machine_busy(), times.user + times.system, _postgres_cpu())

    def since(self, start: CpuSnapshot, rows: int, postgres_own: float | None = None) -> dict[str, float]:
        """CPU seconds since `start` (`postgres_own`: of the path's own backends, when sampled;
        `postgres` counts every postgres process, other sessions' included, and goes down when a
        server on the machine stops during the path)."""
        client, postgres = self.client - start.client, self.postgres - start.postgres
        # With the path's own backends known, other sessions' backends count as other work (and a
        # PostgreSQL server that stopped during the path, whose CPU leaves `postgres`, skews nothing).
        other = max(0.0, self.machine - start.machine - client - (postgres if postgres_own is None else postgres_own))
        per_row = 1e6 / rows if rows > 0 else 0.0
        out = {"client_cpu_s": round(client, 2), "postgres_cpu_s": round(postgres, 2),
               "other_cpu_s": round(other, 2), "client_cpu_us_per_row": round(client * per_row, 2),
               "postgres_cpu_us_per_row": round(postgres * per_row, 2)}
        if postgres_own is not None:
            out.update(postgres_own_cpu_s=round(postgres_own, 2),
                       postgres_own_cpu_us_per_row=round(postgres_own * per_row, 2))
        return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy() -> float:
    """Busy CPU seconds of all cores since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def machine_steal() -> float:
    """CPU seconds the hypervisor gave other guests while this machine wanted them, since boot
    (Linux /proc/stat; 0 elsewhere). A run with much steal ran on a slower machine than its
    neighbours in the table: its times are not comparable."""
    try:
        return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8]) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _postgres_cpu() -> float:
    """CPU seconds used so far by processes named `postgres` (server on this machine; Linux only).
    Includes other sessions' backends: `other_cpu_s` and the load average tell when the machine was shared."""
    total = 0
    try:
        pids = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name_end = stat.rfind(")")
        if stat[stat.find("(") + 1:name_end] != "postgres":
            continue
        fields = stat[name_end + 2:].split()
        # utime + stime, plus cutime + cstime: the postmaster inherits the CPU of exited backends
        total += sum(int(x) for x in fields[11:15])
    return total / _TICK


async def wait_until_idle(limit: float, busy_below: float = 0.15, window: float = 2.0) -> float:
    """Wait (at most `limit` seconds) until the machine's CPUs were less than `busy_below` busy for
    `window` seconds; return the busy fraction of the last window (other work would skew a run)."""
    cpus = os.cpu_count() or 1
    deadline = time.monotonic() + limit
    while True:
        before = _machine_busy()
        await asyncio.sleep(window)
        busy = (_machine_busy() - before) / (window * cpus)
        if busy < busy_below or time.monotonic() >= deadline:
            return busy


class Bench:
    paths: tuple[str, ...] = PATHS
    """The paths, one table each."""

    def __init__(self, dsn: str, schema: str, batch_rows: int) -> None:
        self.dsn = dsn
        self.schema = schema
        self.batch_rows = batch_rows
        self.application = f"bench {schema}"[:63]
        """The application_name of the baselines' connections, by which their backends are found."""
        self.own: BackendCpu | None = None
        """The running path's own PostgreSQL backends' CPU."""

    def own_backends(self) -> BackendCpu:
        """A sampler of the CPU of the backends of the baselines' and conduitd's connections."""
        self.own = BackendCpu(self.dsn, [self.application, f"conduitd {self.schema}"])
        return self.own

    async def connect_path(self) -> asyncpg.Connection:
        """A timed path's connection, named so that its backend's CPU is billed to the path."""
        return await asyncpg.connect(self.dsn, server_settings={"application_name": self.application})

    async def close_path(self, conn: asyncpg.Connection) -> None:
        """Close a path's connection, its backend's CPU read first (the sampler may miss its end)."""
        if self.own is not None:
            self.own.read(conn.get_server_pid())
        await conn.close()

    def q(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    async def admin(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def reset_schema(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
            await conn.execute(f"CREATE TABLE {self.q('bench_checkpoints')} (path text PRIMARY KEY, "
                               "position jsonb, updated_at timestamptz NOT NULL DEFAULT now())")
            for path in self.paths:
                await conn.execute(TABLE_DDL.format(table=self.q(path)))
        finally:
            await conn.close()

    async def drop_schema(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()

    async def settle(self) -> None:
        """Flush the previous path's dirty pages so it does not bill the next one."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            pass
        finally:
            await conn.close()

    # -- conduitd ----------------------------------------------------------------------------

    def conduitd_config(self, data_dir: Path, table: str = "conduitd") -> Config:
        checks = CHECKS if table == "conduitd_checked" else ()
        upsert = table == "conduitd_upsert"
        return Config(
            sources=(FileSourceConfig(name="orders_files", type="file", path=str(data_dir), format="jsonl"),),
            destinations=(PostgresDestinationConfig(name="pg", type="postgres", dsn=self.dsn,
                                                    db_schema=self.schema),),
            resources=(PipelineConfig(name=table, source="orders_files", destination="pg", table=table,
                                      mode="upsert" if upsert else "append", unique_key=("id",) if upsert else (),
                                      batch=BatchConfig(max_rows=self.batch_rows), quality_checks=checks),),
        )

    async def run_conduitd(self, data_dir: Path, path: str = "conduitd") -> Outcome:
        config = self.conduitd_config(data_dir, path)
        started = time.perf_counter()
        runtime = Runtime(config, once=True)
        code = await runtime.run()
        seconds = time.perf_counter() - started
        status = runtime.statuses()[0]
        outcome = Outcome(path, seconds, status.rows_written, status.batches)
        outcome.checks.update(exit_code=int(code), rows_read=status.rows_read, dlq_rows=status.dlq_rows,
                              state=status.state)
        outcome.ok = int(code) == 0 and status.dlq_rows == 0 and status.state == "done"
        return outcome

    # -- baselines ---------------------------------------------------------------------------

    async def _batched(self, path: str, batches: Iterable[Any],
                       write: Callable[[asyncpg.Connection, Any], Awaitable[object]],
                       setup: str | None = None) -> Outcome:
        """Each batch in one transaction with a checkpoint update, as conduitd commits (`setup`:
        SQL run once on the connection first, timed)."""
        update = (f"UPDATE {self.q('bench_checkpoints')} SET position = $2::jsonb, updated_at = now() "
                  "WHERE path = $1")
        started = time.perf_counter()
        conn = await self.connect_path()
        try:
            await conn.execute(f"INSERT INTO {self.q('bench_checkpoints')} (path, position) VALUES ($1, 'null')",
                               path)
            if setup:
                await conn.execute(setup)
            count = 0
            for batch in batches:
                async with conn.transaction():
                    await write(conn, batch)
                    await conn.execute(update, path, f'{{"batch": {count + 1}}}')
                count += 1
        finally:
            await self.close_path(conn)
        return Outcome(path, time.perf_counter() - started, -1, count)

    def _slices(self, records: Sequence[Record]) -> Iterator[Sequence[Record]]:
        for start in range(0, len(records), self.batch_rows):
            yield records[start:start + self.batch_rows]

    async def run_copy_records(self, records: Sequence[Record]) -> Outcome:
        async def write(conn: asyncpg.Connection, batch: Sequence[Record]) -> None:
            await conn.copy_records_to_table("copy_records", schema_name=self.schema, columns=COLUMNS,
                                             records=batch)
        return await self._batched("copy_records", self._slices(records), write)

    async def run_executemany(self, records: Sequence[Record]) -> Outcome:
        sql = (f"INSERT INTO {self.q('executemany')} ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")

        async def write(conn: asyncpg.Connection, batch: Sequence[Record]) -> None:
            await conn.executemany(sql, batch)
        return await self._batched("executemany", self._slices(records), write)

    async def run_preencoded(self, payloads: Sequence[bytes]) -> Outcome:
        async def write(conn: asyncpg.Connection, payload: bytes) -> None:
            await conn.copy_to_table("copy_binary_preencoded", schema_name=self.schema, columns=COLUMNS,
                                     source=io.BytesIO(payload), format="binary")
        return await self._batched("copy_binary_preencoded", payloads, write)

    async def run_upsert_ceiling(self, payloads: Sequence[bytes]) -> Outcome:
        """What conduitd's upsert does at best: per batch, a binary COPY of pre-encoded rows into a
        staging table (created once per connection, emptied at each commit) merged into the table
        by one `INSERT ... ON CONFLICT (id) DO UPDATE`, and the checkpoint update."""
        target, names = self.q("upsert_ceiling"), ", ".join(COLUMNS)
        setup = (f"CREATE TEMP TABLE bench_stage ON COMMIT DELETE ROWS AS SELECT {names} FROM {target} "
                 "WITH NO DATA")
        merge = (f"INSERT INTO {target} ({names}) SELECT {names} FROM bench_stage ON CONFLICT (id) DO UPDATE SET "
                 + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "id"))

        async def write(conn: asyncpg.Connection, payload: bytes) -> None:
            await conn.copy_to_table("bench_stage", columns=COLUMNS, source=io.BytesIO(payload), format="binary")
            await conn.execute(merge)
        return await self._batched("upsert_ceiling", payloads, write, setup)

    async def preload(self, path: str, payloads: Sequence[bytes]) -> None:
        """Fill an upsert path's table with the first generation's rows (not timed), then VACUUM
        ANALYZE it so the timed upsert finds it as a settled table would be."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"TRUNCATE {self.q(path)}")
            for payload in payloads:
                await conn.copy_to_table(path, schema_name=self.schema, columns=COLUMNS,
                                         source=io.BytesIO(payload), format="binary")
            await conn.execute(f"VACUUM (ANALYZE) {self.q(path)}")
        finally:
            await conn.close()

    # -- verification ------------------------------------------------------------------------

    async def verify(self, outcome: Outcome, data: Dataset) -> None:
        rows = await self.admin(
            f"SELECT count(*) AS n, sum(amount) AS amount, sum(quantity) AS quantity, "
            f"count(*) FILTER (WHERE paid) AS paid, count(DISTINCT order_uuid) AS uuids, "
            f"min(id) AS min_id, max(id) AS max_id FROM {self.q(outcome.path)}")
        got = rows[0]
        if outcome.rows < 0:
            outcome.rows = got["n"]
        amount = got["amount"] if got["amount"] is not None else Decimal(0)
        checks = {
            "row_count": got["n"], "row_count_ok": got["n"] == data.rows,
            "sum_amount": str(amount), "sum_amount_ok": amount == data.amount_sum and amount.as_tuple().exponent == -2,
            "sum_quantity_ok": got["quantity"] == data.quantity_sum,
            "paid_count_ok": got["paid"] == data.paid_count,
            "ids_ok": got["n"] == 0 or (got["min_id"] == 1 and got["max_id"] == data.rows),
        }
        if outcome.path.startswith("conduitd"):
            checks["rows_written_ok"] = outcome.rows == data.rows
            dlq = await self.admin(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'conduitd_dlq'", self.schema)
            if dlq[0][0]:
                checks["dlq_rows"] = (await self.admin(f"SELECT count(*) FROM {self.q('conduitd_dlq')}"))[0][0]
                checks["dlq_ok"] = checks["dlq_rows"] == 0
        outcome.checks.update(checks)
        outcome.ok = outcome.ok and all(v for k, v in checks.items() if k.endswith("_ok"))

    async def compare_tables(self, left: str, right: str) -> int:
        """Rows of `left` not in `right` plus the reverse: 0 when the tables hold the same rows."""
        cols = ", ".join(COLUMNS)
        rows = await self.admin(
            f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM {self.q(left)} EXCEPT ALL "
            f"SELECT {cols} FROM {self.q(right)}) a) + (SELECT count(*) FROM (SELECT {cols} FROM {self.q(right)} "
            f"EXCEPT ALL SELECT {cols} FROM {self.q(left)}) b)")
        return int(rows[0][0])

    async def spot_check(self, path: str, records: Sequence[Record], sample: int = 25) -> list[str]:
        """Compare a few rows value by value with the pre-decoded tuples; return the mismatches."""
        ids = sorted({1, len(records), *random.Random(7).sample(range(1, len(records) + 1),
                                                                   min(sample, len(records)))})
        got = await self.admin(f"SELECT {', '.join(COLUMNS)} FROM {self.q(path)} WHERE id = ANY($1::bigint[])", ids)
        by_id = {r["id"]: r for r in got}
        problems = []
        for i in ids:
            expected, row = records[i - 1], by_id.get(i)
            if row is None:
                problems.append(f"id {i}: missing")
                continue
            actual = (row["id"], str(row["order_uuid"]), row["customer"], row["amount"], row["currency"],
                      row["created_at"], row["updated_at"], orjson.loads(row["details"]), row["paid"],
                      row["quantity"])
            wanted = (*expected[:7], orjson.loads(expected[7]), *expected[8:])
            for name, a, w in zip(COLUMNS, actual, wanted, strict=True):
                if a != w or (name == "amount" and str(a) != str(w.quantize(Decimal("0.01")))):
                    problems.append(f"id {i} {name}: {a!r} != {w!r}")
        return problems


# ---------------------------------------------------------------------------------------------
# Reporting


def machine_info(server_version: str, loop: str) -> dict[str, Any]:
    import numpy

    try:
        import uvloop
        uvloop_version: str | None = getattr(uvloop, "__version__", None)
    except ImportError:
        uvloop_version = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "asyncpg": asyncpg.__version__,
        "numpy": numpy.__version__,
        "orjson": orjson.__version__,
        "uvloop": uvloop_version,
        "conduitd": conduitd.__version__,
        "postgresql": server_version,
        "event_loop": loop,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def ratios(best: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "conduitd" in best:
        for other in ("copy_records", "copy_binary_preencoded", "executemany"):
            if best.get(other):
                out[f"conduitd/{other}"] = round(best["conduitd"] / best[other], 3)
    if best.get("conduitd_checked") and best.get("conduitd"):
        out["conduitd_checked/conduitd"] = round(best["conduitd_checked"] / best["conduitd"], 3)
    if best.get("copy_records") and best.get("copy_binary_preencoded"):
        out["copy_records/copy_binary_preencoded"] = round(best["copy_records"] / best["copy_binary_preencoded"], 3)
    if best.get("executemany") and best.get("copy_binary_preencoded"):
        out["executemany/copy_binary_preencoded"] = round(best["executemany"] / best["copy_binary_preencoded"], 3)
    if best.get("conduitd_upsert") and best.get("upsert_ceiling"):
        out["conduitd_upsert/upsert_ceiling"] = round(best["conduitd_upsert"] / best["upsert_ceiling"], 3)
    return out


# Issue 16's targets for conduitd against the ceilings.
TARGETS = {"conduitd/copy_binary_preencoded": 0.85, "conduitd_upsert/upsert_ceiling": 0.5}


def print_report(runs: list[list[Outcome]], rel: dict[str, float], data: Dataset) -> None:
    print(f"\n{data.rows:,} rows, {data.nbytes / 1e6:.0f} MB of JSON lines ({data.nbytes / data.rows:.0f} B/row)")
    print("CPU seconds per million rows of the best run: client = this process (conduitd or the baseline), "
          "pg own = the path's own PostgreSQL backends, pg all = every postgres process (other sessions' too), "
          "broker = none here; other = CPU seconds of everything else")
    print(f"{'path':<24}{'rows/s (best)':>14}{'seconds':>9}{'batches':>8}{'client':>8}{'pg own':>8}{'pg all':>8}"
          f"{'broker':>7}{'other s':>8}  {'verified':<9}all runs (rows/s)")
    for path in PATHS:
        outcomes = [o for run in runs for o in run if o.path == path]
        if not outcomes:
            continue
        fastest = max(outcomes, key=lambda o: o.rows_per_s)
        samples = ", ".join(f"{o.rows_per_s:,.0f}" for o in outcomes)
        verified = "ok" if all(o.ok for o in outcomes) else "FAILED"
        cpu = fastest.checks.get("cpu", {})
        print(f"{path:<24}{fastest.rows_per_s:>14,.0f}{fastest.seconds:>9.2f}{fastest.batches:>8}"
              f"{cpu.get('client_cpu_us_per_row', 0):>8.2f}{cpu.get('postgres_own_cpu_us_per_row', 0):>8.2f}"
              f"{cpu.get('postgres_cpu_us_per_row', 0):>8.2f}{'-':>7}"
              f"{cpu.get('other_cpu_s', 0):>8.2f}  {verified:<9}{samples}")
    print("\nratios of the best runs" + ("; per repeat:" if len(runs) > 1 else ""))
    per_repeat = [ratios({o.path: o.rows_per_s for o in run_}) for run_ in runs] if len(runs) > 1 else []
    for name, value in rel.items():
        extra = "  (" + ", ".join(f"{r[name]:.2f}" for r in per_repeat if name in r) + ")" if per_repeat else ""
        target = TARGETS.get(name)
        verdict = f"   target >= {target}: {'met' if value >= target else 'MISSED'}" if target else ""
        print(f"{name:<42}{value:>6.2f}{extra}{verdict}")


# ---------------------------------------------------------------------------------------------


@dataclass
class UpsertData:
    """The upsert paths' inputs: the second generation (same ids, other values) and its COPY
    buffers, and the first generation's buffers that fill the table before each upsert path."""

    data: Dataset
    records: Sequence[Record]
    old_payloads: Sequence[bytes]
    new_payloads: Sequence[bytes]


async def run_paths(args: argparse.Namespace, selected: list[str], data: Dataset, records: Sequence[Record],
                    payloads: Sequence[bytes], upsert: UpsertData | None = None,
                    ) -> tuple[list[list[Outcome]], dict[str, Any]]:
    """Every selected path, `--repeat` times, each verified; then the machine info."""
    bench = Bench(args.dsn, f"bench_files_to_pg_{os.getpid()}", args.batch_rows)
    server_version = (await bench.admin("SHOW server_version"))[0][0]
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    runs: list[list[Outcome]] = []
    try:
        for repeat in range(args.repeat):
            await bench.reset_schema()
            outcomes: list[Outcome] = []
            order = selected[repeat % len(selected):] + selected[:repeat % len(selected)]  # spread drift
            for path in order:
                if path in UPSERT_PATHS and upsert is not None:
                    await bench.preload(path, upsert.old_payloads)
                await bench.settle()
                if args.wait_idle > 0:
                    outcome_busy = await wait_until_idle(args.wait_idle)
                load = os.getloadavg()[0]
                cpu_before = CpuSnapshot.take()
                with BatchTimeline() as timeline:
                    async with bench.own_backends() as own, ThreadCpu() as threads:
                        outcome = await run_path(bench, path, data, records, payloads, upsert)
                await asyncio.sleep(0.3)  # let the postmaster reap the path's backend: its CPU joins cutime
                outcome.checks["cpu"] = CpuSnapshot.take().since(cpu_before, data.rows, own.seconds)
                outcome.checks["load_average_1m_before"] = round(load, 2)
                if args.wait_idle > 0:
                    outcome.checks["machine_busy_before"] = round(outcome_busy, 2)
                await bench.verify(outcome, upsert.data if path in UPSERT_PATHS and upsert is not None else data)
                outcomes.append(outcome)
                cpu = outcome.checks["cpu"]
                print(f"  run {repeat + 1}/{args.repeat} {path:<24} {outcome.rows_per_s:>10,.0f} rows/s "
                      f"{outcome.seconds:7.2f}s  cpu: client {cpu['client_cpu_s']:5.2f}s "
                      f"postgres {cpu['postgres_own_cpu_s']:5.2f}s (all {cpu['postgres_cpu_s']:5.2f}s) "
                      f"other {cpu['other_cpu_s']:5.2f}s (s per M rows: client {cpu['client_cpu_us_per_row']:.2f} "
                      f"postgres {cpu['postgres_own_cpu_us_per_row']:.2f})  "
                      f"{'ok' if outcome.ok else 'FAILED ' + str(outcome.checks)}", flush=True)
                print_threads(threads.by_role(), data.rows, cpu)
                if args.timeline and path.startswith("conduitd"):
                    timeline.print()
            if repeat == args.repeat - 1:
                await final_checks(bench, outcomes, selected, records)
                if upsert is not None:
                    await final_upsert_checks(bench, outcomes, selected, upsert.records)
            runs.append(outcomes)
    finally:
        if not args.keep_schema:
            await bench.drop_schema()
    return runs, machine_info(server_version, loop)


async def run_path(bench: Bench, path: str, data: Dataset, records: Sequence[Record], payloads: Sequence[bytes],
                   upsert: UpsertData | None) -> Outcome:
    if path == "conduitd_upsert" and upsert is not None:
        return await bench.run_conduitd(upsert.data.path.parent, path)
    if path == "upsert_ceiling" and upsert is not None:
        return await bench.run_upsert_ceiling(upsert.new_payloads)
    if path.startswith("conduitd"):
        return await bench.run_conduitd(data.path.parent, path)
    if path == "copy_records":
        return await bench.run_copy_records(records)
    if path == "executemany":
        return await bench.run_executemany(records)
    return await bench.run_preencoded(payloads)


async def final_checks(bench: Bench, outcomes: list[Outcome], selected: list[str], records: Sequence[Record]) -> None:
    """Value-level checks of conduitd's table: a spot check and a full comparison with copy_records."""
    by_path = {o.path: o for o in outcomes}
    conduitd_outcome = by_path.get("conduitd")
    if conduitd_outcome is None:
        return
    problems = await bench.spot_check("conduitd", records)
    conduitd_outcome.checks["spot_check_ok"] = not problems
    if problems:
        conduitd_outcome.checks["spot_check_problems"] = problems[:20]
    if "copy_records" in selected:
        differing = await bench.compare_tables("conduitd", "copy_records")
        conduitd_outcome.checks["rows_differing_from_copy_records"] = differing
        conduitd_outcome.checks["same_rows_as_copy_records_ok"] = differing == 0
    conduitd_outcome.ok = conduitd_outcome.ok and all(
        v for k, v in conduitd_outcome.checks.items() if k.endswith("_ok"))
    print(f"  conduitd value checks: {'ok' if conduitd_outcome.ok else conduitd_outcome.checks}")


async def final_upsert_checks(bench: Bench, outcomes: list[Outcome], selected: list[str],
                              records: Sequence[Record]) -> None:
    """Value-level checks of conduitd's upserted table: a spot check against the second
    generation, and the same rows as the upsert ceiling's table."""
    conduitd_outcome = next((o for o in outcomes if o.path == "conduitd_upsert"), None)
    if conduitd_outcome is None:
        return
    problems = await bench.spot_check("conduitd_upsert", records)
    conduitd_outcome.checks["spot_check_ok"] = not problems
    if problems:
        conduitd_outcome.checks["spot_check_problems"] = problems[:20]
    if "upsert_ceiling" in selected:
        differing = await bench.compare_tables("conduitd_upsert", "upsert_ceiling")
        conduitd_outcome.checks["rows_differing_from_upsert_ceiling"] = differing
        conduitd_outcome.checks["same_rows_as_upsert_ceiling_ok"] = differing == 0
    conduitd_outcome.ok = conduitd_outcome.ok and all(
        v for k, v in conduitd_outcome.checks.items() if k.endswith("_ok"))
    print(f"  conduitd_upsert value checks: {'ok' if conduitd_outcome.ok else conduitd_outcome.checks}")


def add_common_arguments(parser: argparse.ArgumentParser, paths: Sequence[str], what: str, out: str,
                         default: Sequence[str] | None = None) -> None:
    """The options both benchmarks take (`what` names a row in the --rows help; `default`: the
    paths run without --paths, all of them when None)."""
    parser.add_argument("--rows", type=int, default=1_000_000, help=f"{what} (default 1,000,000)")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL DSN (default: $CONDUITD_TEST_PG_DSN or local)")
    parser.add_argument("--out", default=out, help=f"JSON results file (default {out})")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="rows per transaction (default 50,000)")
    parser.add_argument("--repeat", type=int, default=1, help="run every path this many times; best is reported")
    parser.add_argument("--paths", default=",".join(paths if default is None else default),
                        help=f"comma-separated subset of {','.join(paths)}")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each path, wait up to this long for the machine to be idle (shared hosts)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--keep-schema", action="store_true", help="do not drop the benchmark schema at the end")
    parser.add_argument("--timeline", action="store_true",
                        help="after each conduitd run, print every batch's stage spans (benchmarks/timeline.py)")


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, paths: Sequence[str]) -> None:
    unknown = set(args.paths.split(",")) - set(paths)
    if unknown:
        parser.error(f"unknown path(s) {', '.join(sorted(unknown))}; known: {', '.join(paths)}")
    if args.rows < 1 or args.batch_rows < 1 or args.repeat < 1:
        parser.error("--rows, --batch-rows and --repeat must be positive")


def event_loop_runner() -> Callable[[Any], Any]:
    """uvloop's `run` where it is installed (as `conduitd run` uses it), else asyncio's; with the
    gc thresholds the conduitd CLI sets (conduitd/cli.py)."""
    gc.set_threshold(100_000, 50, 100)
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def result_header(benchmark: str, data: Dataset) -> dict[str, Any]:
    """The fields every results file starts with."""
    return {"benchmark": benchmark, "when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": data.rows,
            "bytes": data.nbytes, "bytes_per_row": round(data.nbytes / data.rows, 1)}


def write_result(path: str, result: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"\nwrote {out}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_arguments(parser, PATHS, "events to generate", DEFAULT_OUT, DEFAULT_PATHS)
    parser.add_argument("--upsert", action="store_true",
                        help=f"run the upsert paths ({', '.join(UPSERT_PATHS)}) instead of the default ones "
                             "(or name them in --paths)")
    args = parser.parse_args(argv)
    if args.upsert:
        args.paths = ",".join(UPSERT_PATHS)
    check_common_arguments(parser, args, PATHS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [p for p in PATHS if p in set(args.paths.split(","))]
    runner = event_loop_runner()
    tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-"))
    try:
        t0 = time.perf_counter()
        (tmp / "data").mkdir()
        data = generate(tmp / "data", args.rows, args.seed)
        print(f"generated {data.rows:,} rows ({data.nbytes / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        records = decode_records(data.path)
        upserting = any(p in UPSERT_PATHS for p in selected)
        needs_payloads = "copy_binary_preencoded" in selected or upserting
        payloads = encode_batches(records, args.batch_rows) if needs_payloads else []
        print(f"pre-decoded tuples{' and pre-encoded COPY buffers' if payloads else ''} "
              f"in {time.perf_counter() - t0:.1f}s (not timed)")
        upsert = None
        if upserting:
            t0 = time.perf_counter()
            (tmp / "upsert").mkdir()
            # The same ids 1..N with other values (another seed): every row of the table changes.
            data2 = generate(tmp / "upsert", args.rows, args.seed + 1)
            records2 = decode_records(data2.path)
            upsert = UpsertData(data2, records2, payloads, encode_batches(records2, args.batch_rows))
            print(f"upsert: generated, pre-decoded and pre-encoded the second generation in "
                  f"{time.perf_counter() - t0:.1f}s (not timed)")
        # The pre-decoded rows must not cost the timed paths anything: no collection traverses them.
        gc.collect()
        gc.freeze()
        runs, machine = runner(run_paths(args, selected, data, records, payloads, upsert))
        gc.unfreeze()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {p: max(o.rows_per_s for run_ in runs for o in run_ if o.path == p) for p in selected}
    rel = ratios(best)
    print_report(runs, rel, data)
    result = {
        **result_header("files_to_postgres", data),
        "batch_rows": args.batch_rows,
        "repeat": args.repeat,
        "seed": args.seed,
        "rows_per_s_best": {p: round(v) for p, v in best.items()},
        "ratios": rel,
        "ratios_per_repeat": [ratios({o.path: o.rows_per_s for o in run_}) for run_ in runs],
        "runs": [[{"path": o.path, "seconds": round(o.seconds, 3), "rows": o.rows, "batches": o.batches,
                   "rows_per_s": round(o.rows_per_s), "ok": o.ok, "checks": o.checks} for o in run_]
                 for run_ in runs],
        "machine": machine,
        "notes": [
            "one process, one event loop; paths run one after another with a CHECKPOINT before each",
            "conduitd is timed from Runtime construction to exit and includes reading and decoding the file; "
            "the baselines are handed pre-decoded rows (decode and encode not timed)",
            "every batch is one transaction that also updates a checkpoint row",
            "gc thresholds as set by the conduitd CLI: (100000, 50, 100); pre-decoded rows are gc-frozen",
            "tables: same DDL, logged, primary key on id, autovacuum off",
        ],
    }
    write_result(args.out, result)
    return 0 if all(o.ok for run_ in runs for o in run_) else 1


if __name__ == "__main__":
    sys.exit(main())
