"""Benchmark: Kinesis -> PostgreSQL, conduitd against the COPY ceiling, a naive consumer and the
server's own read-only drain, side by side in one run.

    python benchmarks/kinesis_to_postgres.py [--records 200000] [--quick] [--shards 16]
        [--server kinesalite|kinesis-local] [--endpoint URL] [--repeat N] [--profile DIR]

Generates N order events with the data generator of ``files_to_postgres.py`` (~330 bytes, 10
fields; seeded) and puts them, once and untimed, into a new stream of 16 shards (partition key =
the id, PutRecords of 500, 4 in flight) on a private local Kinesis server: ``kinesalite`` 3.3.3 by
default (npm, installed under ``.services/kinesalite`` when missing), or ``kinesis-local`` 0.6.2
(the project's test server, ``--server kinesis-local``), or a running server (``--endpoint``).

The default size is **200,000 records** (``--quick``: 10,000; ``--records 1000000`` where someone
has the patience). Local servers are slow to put into: measured on this 2-core shared machine,
kinesalite took 2,000-2,800 records/s with one request in flight and 3,600-11,800/s with four
(depending on the machine's load), whatever the shard count (1-64) and the shard size; kinesis-local
took ~200/s into 1 shard, ~900/s into 4, ~1,700/s into 16 and 500-900/s into 50 shards, slowing as
shards grow. kinesalite also answers GetRecords for 4-6x less CPU (35-38 against 150-235 CPU
seconds per million records). So kinesalite loads 200,000 records in ~20-45 s; every reading path
is bounded by how fast the server answers GetRecords. Then, one after another (a CHECKPOINT before
each), each table path into its own fresh logged table with the same DDL (primary key on id):

* ``ceiling``: the same records decoded and pre-encoded (untimed) by conduitd's binary COPY
  encoder, written by asyncpg ``copy_to_table(format="binary")`` in ``--batch-rows`` transactions
  that also update a checkpoint row. Reads nothing from Kinesis: PostgreSQL's own speed.
* ``drain``: read-only, aiobotocore GetRecords (``Limit`` 10,000) over every shard at once, one
  task per shard, until each answers empty with ``MillisBehindLatest`` 0; no decoding, no writes
  (a CRC of each record's bytes is summed for the check): the server's own speed, with the
  client's response parsing (JSON, base64, timestamps) that every botocore consumer pays.
* ``drain_fast``: the same drain with botocore's timestamp parser (dateutil in the local zone,
  ~15 us of CPU a record, three quarters of botocore's parsing of a GetRecords answer) replaced by
  ``datetime.fromtimestamp``: what a consumer could read with that cost removed.
* ``naive``: a botocore GetRecords loop (``Limit`` 10,000), shard after shard, ``json.loads`` per
  record, and per page one asyncpg ``executemany`` INSERT plus a checkpoint row update (shard and
  sequence number) in one transaction.
* ``conduitd``: ``conduitd --once`` as a subprocess, ``type: kinesis`` source -> PostgreSQL append,
  ``batch.max_rows`` ``--batch-rows`` (50,000). Timed from process start to exit (interpreter
  start, imports and connections included; that fixed cost is measured on an empty stream too).

Every path is verified by count and checksum: the drain by record count and the sum of the
records' CRC-32s against the generated lines'; every table by count == count(DISTINCT id) == N,
ids 1..N, exact ``sum(amount)`` against the Decimal sum of the generator, ``sum(quantity)``,
``count(paid)`` and an order-independent checksum of every value (sum of a 60-bit md5 prefix per
row) equal to the ceiling's table; conduitd's also by no DLQ rows and one checkpoint per shard at
the shard's last sequence number. Per path: rows/s, wall seconds, CPU seconds per million rows of
the client (this process and its children: conduitd), of PostgreSQL (``pg own``: the backends of
the path's own connections, which carry an application_name of this run, read from /proc every
0.1 s; ``pg all``: every ``postgres`` process, other sessions on a shared server included) and of
the Kinesis server; the ratios conduitd / ceiling, conduitd / naive, conduitd / drain. The machine
may be shared: ``other`` is the CPU time no measured process used; compare ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root holds `benchmarks` and `tests`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import orjson

from benchmarks.files_to_postgres import (
    COLUMNS,
    TABLE_DDL,
    Dataset,
    Record,
    _machine_busy,
    _postgres_cpu,
    decode_records,
    encode_batches,
    event_loop_runner,
    generate,
    wait_until_idle,
    write_result,
)
from benchmarks.listener import pid_listening_on
from tests.helpers import kinesis as kh

DEFAULT_DSN = os.environ.get("CONDUITD_TEST_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432/conduitd_test")
DEFAULT_OUT = "benchmarks/results/kinesis_to_postgres.json"
DEFAULT_RECORDS = 200_000
QUICK_RECORDS = 10_000
PATHS = ("ceiling", "drain", "drain_fast", "naive", "conduitd")
TABLE_PATHS = ("ceiling", "naive", "conduitd")
KINESALITE_VERSION = "3.3.3"
GET_LIMIT = 10_000
PUT_THREADS = 4
PIPELINE = "orders"  # conduitd's pipeline name, as stored in its checkpoints
CHECKSUM_SQL = """SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS min_id, max(id) AS max_id,
       sum(amount) AS amount, sum(quantity) AS quantity, count(*) FILTER (WHERE paid) AS paid,
       sum(('x' || left(md5(concat_ws('|', id, order_uuid, customer, amount, currency, created_at, updated_at,
                                       details, paid, quantity)), 15))::bit(60)::bigint::numeric) AS checksum
FROM {table}"""


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Cpu:
    """CPU seconds so far: the machine (busy), this process and its reaped children, every
    `postgres` process, the Kinesis server (0 when it is not this benchmark's own)."""

    machine: float
    client: float
    postgres: float
    server: float

    @staticmethod
    def take(server_pid: int | None) -> Cpu:
        t = os.times()
        return Cpu(_machine_busy(), t.user + t.system + t.children_user + t.children_system, _postgres_cpu(),
                   process_cpu(server_pid))


def process_cpu(pid: int | None) -> float:
    """CPU seconds of one process (Linux), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_since(before: Cpu, after: Cpu, rows: int) -> dict[str, float]:
    client, postgres, server = (after.client - before.client, after.postgres - before.postgres,
                                after.server - before.server)
    other = max(0.0, after.machine - before.machine - client - postgres - server)
    per_m = 1e6 / rows if rows else 0.0
    return {"client_s": round(client, 2), "postgres_s": round(postgres, 2), "server_s": round(server, 2),
            "other_s": round(other, 2), "client_s_per_m": round(client * per_m, 2),
            "postgres_s_per_m": round(postgres * per_m, 2), "server_s_per_m": round(server * per_m, 2)}


@dataclass
class Outcome:
    path: str
    seconds: float = 0.0
    rows: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    skipped: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------------------
# The Kinesis server and the stream (not timed)


@dataclass
class Server:
    endpoint: str
    kind: str
    process: subprocess.Popen[bytes] | None  # None: a server this benchmark did not start
    log: Path | None = None  # its output
    listener_pid: int | None = None  # the process of a given local endpoint, for its CPU

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else self.listener_pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def kinesalite_cli() -> Path:
    """kinesalite's cli.js, installed from the npm registry under .services/kinesalite when missing
    (as scripts/services.sh installs kinesis-local)."""
    prefix = kh.services_dir() / "kinesalite"
    package = prefix / "node_modules" / "kinesalite"
    manifest = package / "package.json"
    if not manifest.exists() or orjson.loads(manifest.read_bytes()).get("version") != KINESALITE_VERSION:
        print(f"installing kinesalite {KINESALITE_VERSION} from the npm registry under {prefix}", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
                        f"kinesalite@{KINESALITE_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return package / "cli.js"


def start_server(kind: str, endpoint: str | None, shard_limit: int, log: Path) -> Server:
    """A running server at `endpoint`, else a private one of `kind` on a free port (in memory),
    its output into `log`."""
    if endpoint:
        # A local server's process is found by its listening port, so its CPU is billed too.
        pid = pid_listening_on(endpoint)
        return Server(endpoint, f"given endpoint {endpoint} ({'pid ' + str(pid) if pid else 'CPU not measured'})",
                      None, None, pid)
    port = kh.free_port()
    output = open(log, "wb")  # noqa: SIM115 - the server's, kept open as long as it runs
    if kind == "kinesalite":
        process = subprocess.Popen(
            ["node", str(kinesalite_cli()), "--port", str(port), "--createStreamMs", "0", "--deleteStreamMs", "0",
             "--updateStreamMs", "0", "--shardLimit", str(shard_limit)],
            stdout=output, stderr=subprocess.STDOUT)
        label = f"kinesalite {KINESALITE_VERSION} (private, in memory)"
    else:
        env = {key: value for key, value in os.environ.items() if key != "INITIALIZE_STREAMS"}
        env.update(kh.INSTANT, KINESIS_MOCK_PLAIN_PORT=str(port), KINESIS_MOCK_TLS_PORT=str(kh.free_port()),
                   AWS_REGION="us-east-1", AWS_ACCOUNT_ID="000000000000", LOG_LEVEL="WARN",
                   SHOULD_PERSIST_DATA="false", LOAD_DATA_IF_EXISTS="false", SHARD_LIMIT=str(shard_limit),
                   CATS_EFFECT_SHUTDOWN_HOOK_TIMEOUT="1s")
        process = subprocess.Popen(["node", "main.js"], cwd=kh.kinesis_local_package(), env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
        label = f"kinesis-local {kh.KINESIS_LOCAL_VERSION} (private, in memory)"
    output.close()  # the child has its own descriptor
    server = Server(f"http://127.0.0.1:{port}", label, process, log)
    probe = kh.client(server.endpoint, timeout=1.0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            probe.list_streams()
            return server
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{kind} did not answer on port {port}")


@dataclass
class Loaded:
    """What was put: per shard, the record count and the last sequence number (as an integer)."""

    counts: dict[str, int]
    last_sequence: dict[str, int]
    seconds: float
    crc_sum: int


def load_stream(kinesis: Any, stream: str, data: Dataset, threads: int) -> Loaded:
    """Put every line of the dataset (partition key: the record's id, 1-based line number) with
    PutRecords of 500, `threads` requests in flight; per shard counts and last sequence numbers."""
    entries: list[dict[str, Any]] = []
    crc_sum = 0
    with open(data.path, "rb") as handle:
        for i, line in enumerate(handle, 1):
            value = line.rstrip(b"\n")
            entries.append({"Data": value, "PartitionKey": str(i)})
            crc_sum += zlib.crc32(value)
    results: list[tuple[str, str] | None] = [None] * len(entries)
    chunks = [range(start, min(start + 500, len(entries))) for start in range(0, len(entries), 500)]
    started = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda chunk: kh._put_entries(kinesis, stream, entries, chunk, results), chunks):
            done += 500
            if done % 20_000 == 0:
                print(f"  put {done:,} records, {done / (time.perf_counter() - started):,.0f}/s", flush=True)
    seconds = time.perf_counter() - started
    counts: dict[str, int] = {}
    last: dict[str, int] = {}
    for result in results:
        assert result is not None
        shard, sequence = result
        counts[shard] = counts.get(shard, 0) + 1
        last[shard] = max(last.get(shard, 0), int(sequence))
    return Loaded(counts, last, seconds, crc_sum)


def epoch_to_datetime(value: Any) -> datetime:
    """A Kinesis JSON timestamp (epoch seconds, a number) as an aware datetime, without botocore's
    default parser (dateutil with the local zone, then converted: ~15 us a record)."""
    return datetime.fromtimestamp(float(value), UTC)


# ---------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args: argparse.Namespace, server: Server, stream: str, empty_stream: str, data: Dataset,
                 loaded: Loaded) -> None:
        self.args = args
        self.server = server
        self.stream = stream
        self.empty_stream = empty_stream
        self.data = data
        self.loaded = loaded
        self.dsn: str = args.dsn
        self.application = f"conduitd-bench-kinesis-{os.getpid()}"
        """The application_name of every timed path's connections (conduitd's too): their backends'
        CPU is PostgreSQL's share of the path, apart from other sessions on a shared server."""
        self.path_dsn = f"{self.dsn}{'&' if '?' in self.dsn else '?'}application_name={self.application}"
        self.schema = f"bench_kinesis_{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-kinesis-"))
        self.reference: dict[str, Any] | None = None  # the ceiling table's checksum row
        self.backends: dict[int, float] = {}
        """The running path's PostgreSQL backends: pid -> CPU seconds last read."""

    def q(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    @staticmethod
    def table(path: str) -> str:
        """A path's destination table (conduitd reserves names that start with `conduitd_`)."""
        return f"to_{path}"

    async def admin(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def reset_schema(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
            await conn.execute(f"CREATE TABLE {self.q('bench_checkpoints')} (path text PRIMARY KEY, "
                               "position jsonb, updated_at timestamptz NOT NULL DEFAULT now())")
            for path in (*TABLE_PATHS, "fixed_cost"):
                await conn.execute(TABLE_DDL.format(table=self.q(self.table(path))))
        finally:
            await conn.close()

    async def drop_schema(self) -> None:
        await self.admin(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    async def settle(self) -> None:
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await self.admin("CHECKPOINT")

    # -- the ceiling -------------------------------------------------------------------------

    async def ceiling(self, payloads: Sequence[bytes]) -> int:
        update = f"UPDATE {self.q('bench_checkpoints')} SET position = $2::jsonb, updated_at = now() WHERE path = $1"
        conn = await asyncpg.connect(self.path_dsn)
        try:
            await conn.execute(f"INSERT INTO {self.q('bench_checkpoints')} (path, position) VALUES ('ceiling', "
                               "'null')")
            for n, payload in enumerate(payloads, 1):
                async with conn.transaction():
                    await conn.copy_to_table(self.table("ceiling"), schema_name=self.schema, columns=COLUMNS,
                                             source=io.BytesIO(payload), format="binary")
                    await conn.execute(update, "ceiling", f'{{"batch": {n}}}')
        finally:
            await self.close_measured(conn)
        return self.data.rows

    # -- the drain ---------------------------------------------------------------------------

    async def drain(self, outcome: Outcome, fast_timestamps: bool = False) -> int:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        shard_ids = list(self.loaded.counts)
        config = AioConfig(max_pool_connections=max(10, len(shard_ids)), retries={"max_attempts": 1},
                           read_timeout=120, connect_timeout=10)
        crc = zlib.crc32
        session = get_session()
        if fast_timestamps:  # botocore's default (dateutil, local time zone) costs ~15 us a record
            session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=epoch_to_datetime)
        async with session.create_client(
                "kinesis", region_name="us-east-1", endpoint_url=self.server.endpoint, aws_access_key_id="test",
                aws_secret_access_key="test", config=config) as kinesis:
            shards = kh._parents_first(await self._list_shards(kinesis))

            async def read(shard_id: str) -> tuple[int, int, int]:
                iterator = (await kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id,
                                                             ShardIteratorType="TRIM_HORIZON"))["ShardIterator"]
                count = crc_sum = gets = 0
                while iterator:
                    answer = await kinesis.get_records(ShardIterator=iterator, Limit=GET_LIMIT)
                    gets += 1
                    records = answer["Records"]
                    count += len(records)
                    crc_sum += sum(crc(r["Data"]) for r in records)
                    if not records and answer.get("MillisBehindLatest", 0) == 0:
                        break
                    iterator = answer.get("NextShardIterator")
                return count, crc_sum, gets

            results = await asyncio.gather(*(read(s["ShardId"]) for s in shards))
        count = sum(r[0] for r in results)
        outcome.checks.update(records=count, records_ok=count == self.data.rows,
                              crc_sum_ok=sum(r[1] for r in results) == self.loaded.crc_sum,
                              get_records_calls=sum(r[2] for r in results))
        return count

    async def _list_shards(self, kinesis: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = await kinesis.list_shards(StreamName=self.stream)
        while True:
            found.extend(page["Shards"])
            if not page.get("NextToken"):
                return found
            page = await kinesis.list_shards(NextToken=page["NextToken"])

    # -- the naive consumer ------------------------------------------------------------------

    async def naive(self, outcome: Outcome) -> int:
        kinesis = kh.client(self.server.endpoint, timeout=120.0)
        insert = (f"INSERT INTO {self.q(self.table('naive'))} ({', '.join(COLUMNS)}) "
                  f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")
        checkpoint = (f"INSERT INTO {self.q('bench_checkpoints')} (path, position) VALUES ($1, $2::jsonb) "
                      "ON CONFLICT (path) DO UPDATE SET position = excluded.position, updated_at = now()")
        loads, dumps, parse = orjson.loads, orjson.dumps, datetime.fromisoformat
        conn = await asyncpg.connect(self.path_dsn)
        total = pages = 0
        try:
            for shard in kh._parents_first(kh.shards(kinesis, self.stream)):
                shard_id = shard["ShardId"]
                iterator = kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id,
                                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while iterator:
                    answer = kinesis.get_records(ShardIterator=iterator, Limit=GET_LIMIT)
                    records = answer["Records"]
                    if not records and answer.get("MillisBehindLatest", 0) == 0:
                        break
                    iterator = answer.get("NextShardIterator")
                    if not records:
                        continue
                    rows: list[Record] = []
                    for record in records:
                        d = loads(record["Data"])
                        rows.append((d["id"], d["order_uuid"], d["customer"], Decimal(repr(d["amount"])),
                                     d["currency"], parse(d["created_at"]), parse(d["updated_at"]),
                                     dumps(d["details"]).decode(), d["paid"], d["quantity"]))
                    async with conn.transaction():
                        await conn.executemany(insert, rows)
                        await conn.execute(checkpoint, f"naive:{shard_id}", orjson.dumps(
                            {"sequence": records[-1]["SequenceNumber"]}).decode())
                    total += len(rows)
                    pages += 1
        finally:
            await self.close_measured(conn)
            kinesis.close()
        outcome.checks["pages"] = pages
        return total

    # -- conduitd ----------------------------------------------------------------------------

    def conduitd_config(self, table: str, stream: str) -> Path:
        config = self.tmp / f"{table}.yaml"
        config.write_text(textwrap.dedent(f"""\
            sources:
              - {{name: kin, type: kinesis, stream: {stream}, region: us-east-1, endpoint_url: "{self.server.endpoint}",
                 aws_access_key_id: test, aws_secret_access_key: test, start: trim_horizon, format: json}}
            destinations:
              - {{name: pg, type: postgres, dsn: "{self.path_dsn}", schema: {self.schema}}}
            resources:
              - name: {PIPELINE if table == self.table("conduitd") else table}
                source: kin
                destination: pg
                table: {table}
                mode: append
                batch: {{max_rows: {self.args.batch_rows}}}
            """))
        return config

    async def conduitd(self, outcome: Outcome | None, path: str = "conduitd", stream: str | None = None) -> int:
        table = self.table(path)
        config = self.conduitd_config(table, stream or self.stream)
        command = [sys.executable, "-m", "conduitd", "--once", "-c", str(config)]
        if self.args.profile and path == "conduitd":
            await asyncio.to_thread(Path(self.args.profile).mkdir, parents=True, exist_ok=True)
            flame = Path(self.args.profile) / "conduitd.pyspy.txt"
            command = ["py-spy", "record", "--format", "raw", "--threads", "--rate", "100", "-o", str(flame),
                       "--", *command]
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        _, err = await process.communicate()
        if process.returncode:
            text = err.decode(errors="replace")
            shown = text if len(text) <= 3000 else f"{text[:1500]} [...] {text[-1500:]}"
            raise RuntimeError(f"conduitd exit {process.returncode}: {shown}")
        if outcome is not None:
            outcome.checks["exit_code"] = process.returncode
        return int((await self.admin(f"SELECT count(*) FROM {self.q(table)}"))[0][0])

    async def fixed_cost(self) -> tuple[float, float]:
        """Seconds and client CPU seconds of a `conduitd --once` run over an empty stream of as many
        shards: interpreter start, imports, connections, setup, ListShards, one GetRecords a shard."""
        before = Cpu.take(None)
        started = time.perf_counter()
        await self.conduitd(None, "fixed_cost", self.empty_stream)
        return time.perf_counter() - started, Cpu.take(None).client - before.client

    # -- running and checking ----------------------------------------------------------------

    async def run(self, path: str, payloads: Sequence[bytes]) -> Outcome:
        outcome = Outcome(path)
        runs: dict[str, Callable[[], Any]] = {
            "ceiling": lambda: self.ceiling(payloads),
            "drain": lambda: self.drain(outcome),
            "drain_fast": lambda: self.drain(outcome, fast_timestamps=True),
            "naive": lambda: self.naive(outcome),
            "conduitd": lambda: self.conduitd(outcome),
        }
        await self.settle()
        if self.args.wait_idle:
            await wait_until_idle(self.args.wait_idle)
        backends: dict[int, float] = {}
        self.backends = backends
        done = asyncio.Event()
        sampler = asyncio.create_task(self.sample_backends(backends, done))
        before = Cpu.take(self.server.pid)
        started = time.perf_counter()
        try:
            outcome.rows = await runs[path]()
        except Exception as exc:  # noqa: BLE001 - a failed path is reported, the others still run
            outcome.checks["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        outcome.seconds = time.perf_counter() - started
        process = self.server.process
        if process is not None and process.poll() is not None:  # the server died during the path
            tail = self.server.log.read_bytes()[-1500:].decode(errors="replace") if self.server.log else ""
            outcome.checks.update(server_exit_code=process.returncode, server_output_tail=tail)
            outcome.checks["server_alive_ok"] = False
        done.set()
        await sampler
        await asyncio.sleep(0.3)  # let the postmaster reap the path's backends: their CPU joins cutime
        after = Cpu.take(self.server.pid)
        outcome.cpu = cpu_since(before, after, outcome.rows)
        own = sum(backends.values())
        # Other sessions' backends are other work; `pg all` drops when a server on the machine stops.
        outcome.cpu["other_s"] = round(max(0.0, after.machine - before.machine - outcome.cpu["client_s"] - own
                                           - outcome.cpu["server_s"]), 2)
        total = outcome.cpu["client_s"] + own + outcome.cpu["server_s"]
        per_m = 1e6 / outcome.rows if outcome.rows else 0.0
        outcome.cpu.update(postgres_own_s=round(own, 2), postgres_own_s_per_m=round(own * per_m, 2),
                           postgres_backends=len(backends), total_s_per_m=round(total * per_m, 2))
        if path in TABLE_PATHS:
            await self.verify(outcome)
        outcome.ok = "error" not in outcome.checks and all(v for k, v in outcome.checks.items() if k.endswith("_ok"))
        return outcome

    async def close_measured(self, conn: asyncpg.Connection) -> None:
        """Close a path's own connection, its backend's CPU seconds read first (for short paths the
        sampler may never see)."""
        pid = conn.get_server_pid()
        cpu = process_cpu(pid)
        if cpu:
            self.backends[pid] = max(self.backends.get(pid, 0.0), cpu)
        await conn.close()

    async def sample_backends(self, seen: dict[int, float], done: asyncio.Event, every: float = 0.1) -> None:
        """Until `done`: the CPU seconds of every backend of the paths' application_name (conduitd's
        destination names its connections `conduitd <schema>`, the schema being this run's), read from
        /proc every `every` seconds (the server is local); the last reading of each goes into `seen`.
        A backend's last tenth of a second before it exits is not seen."""
        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1::text[])",
                                        [self.application, f"conduitd {self.schema}"[:63]])
                for row in rows:
                    cpu = process_cpu(row["pid"])
                    if cpu:
                        seen[row["pid"]] = max(seen.get(row["pid"], 0.0), cpu)
                if done.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), every)
        finally:
            await conn.close()

    async def verify(self, outcome: Outcome) -> None:
        got = dict((await self.admin(CHECKSUM_SQL.format(table=self.q(self.table(outcome.path)))))[0])
        data = self.data
        amount = got["amount"] if got["amount"] is not None else Decimal(0)
        outcome.checks.update(
            row_count=got["n"], row_count_ok=got["n"] == got["ids"] == data.rows,
            ids_ok=(got["min_id"], got["max_id"]) == (1, data.rows),
            sum_amount_ok=amount == data.amount_sum and amount.as_tuple().exponent == -2,
            sum_quantity_ok=got["quantity"] == data.quantity_sum, paid_count_ok=got["paid"] == data.paid_count,
            reported_rows_ok=outcome.rows == data.rows)
        if outcome.path == "ceiling":
            if all(v for k, v in outcome.checks.items() if k.endswith("_ok")):
                self.reference = got
        elif self.reference is not None:
            outcome.checks["checksum_ok"] = got["checksum"] == self.reference["checksum"]
        else:
            outcome.checks["checksum"] = "no verified ceiling table to compare with"
        if outcome.path == "conduitd":
            await self.verify_conduitd(outcome)

    async def verify_conduitd(self, outcome: Outcome) -> None:
        dlq_table = f"{self.table('conduitd')}_dlq"
        dlq = await self.admin("SELECT to_regclass($1) IS NOT NULL", f'"{self.schema}"."{dlq_table}"')
        if dlq[0][0]:
            n = (await self.admin(f"SELECT count(*) FROM {self.q(dlq_table)}"))[0][0]
            outcome.checks.update(dlq_rows=n, dlq_ok=n == 0)
        rows = await self.admin(f'SELECT "partition", position::jsonb ->> \'sequence\' AS sequence '
                                f"FROM {self.q('conduitd_checkpoints')} WHERE pipeline = $1", PIPELINE)
        got = {r["partition"]: int(r["sequence"]) for r in rows if r["sequence"] is not None}
        want = {f"{self.stream}:{shard}": seq for shard, seq in self.loaded.last_sequence.items()}
        outcome.checks.update(checkpoints=len(rows), checkpoints_ok=got == want)


# ---------------------------------------------------------------------------------------------
# Reporting


def best_of(runs: list[list[Outcome]]) -> dict[str, Outcome]:
    best: dict[str, Outcome] = {}
    for run in runs:
        for o in run:
            if o.ok and (o.path not in best or o.rows_per_s > best[o.path].rows_per_s):
                best[o.path] = o
    return best


def cpu_ratios(best: dict[str, Outcome]) -> dict[str, float]:
    """Rows per CPU second (client + its own PostgreSQL backends + the Kinesis server) of one path
    over another's: what the ratio of rates would be on a machine where the paths had the CPUs to
    themselves (the work is CPU-bound), whatever else ran beside them."""
    cost = {p: o.cpu.get("total_s_per_m", 0.0) for p, o in best.items()}
    out: dict[str, float] = {}
    for a, b in (("conduitd", "ceiling"), ("conduitd", "naive"), ("conduitd", "drain"), ("conduitd", "drain_fast"),
                 ("naive", "drain")):
        if cost.get(a) and cost.get(b):
            out[f"{a}/{b}"] = round(cost[b] / cost[a], 3)
    return out


def ratios(best: dict[str, Outcome]) -> dict[str, float]:
    rate = {p: o.rows_per_s for p, o in best.items()}
    out: dict[str, float] = {}
    for a, b in (("conduitd", "ceiling"), ("conduitd", "naive"), ("conduitd", "drain"), ("conduitd", "drain_fast"),
                 ("drain", "ceiling"), ("drain", "drain_fast"), ("naive", "drain")):
        if rate.get(a) and rate.get(b):
            out[f"{a}/{b}"] = round(rate[a] / rate[b], 3)
    return out


def print_report(runs: list[list[Outcome]], rel: dict[str, float], rows: int, fixed: float | None,
                 load: float) -> None:
    print(f"\n{rows:,} records; best run per path; CPU seconds per million rows "
          f"(machine load average now {load:.1f} on {os.cpu_count()} CPUs): client = this process and its children "
          "(conduitd or the baseline), pg own = the path's own PostgreSQL backends, pg all = every postgres "
          "process, broker = the Kinesis server's process")
    print(f"{'path':<11}{'rows/s':>10}{'wall s':>8}{'client':>8}{'pg own':>8}{'pg all':>8}{'broker':>8}"
          f"{'total':>8}{'other s':>8}  {'verified':<9}all runs (rows/s)")
    for path in PATHS:
        outcomes = [o for run in runs for o in run if o.path == path]
        if not outcomes:
            continue
        o = max(outcomes, key=lambda x: (x.ok, x.rows_per_s))
        c = o.cpu
        verified = "ok" if all(x.ok for x in outcomes) else "FAILED"
        samples = ", ".join(f"{x.rows_per_s:,.0f}" for x in outcomes)
        print(f"{path:<11}{o.rows_per_s:>10,.0f}{o.seconds:>8.2f}{c['client_s_per_m']:>8.2f}"
              f"{c['postgres_own_s_per_m']:>8.2f}{c['postgres_s_per_m']:>8.2f}{c['server_s_per_m']:>8.2f}"
              f"{c['total_s_per_m']:>8.2f}{c['other_s']:>8.2f}  {verified:<9}{samples}")
        if verified != "ok":
            print(f"  {path} checks: {next(x.checks for x in outcomes if not x.ok)}")
    print("(total = client + pg own + broker; other s = CPU seconds used by nothing measured: other work)")
    print(f"\n{'ratio':<20}{'rows/s':>7}{'rows per CPU s':>16}")
    measured = any(o.cpu.get("server_s") for run in runs for o in run)
    by_cpu = cpu_ratios(best_of(runs)) if measured else {}  # without the server's CPU they would mislead
    for name, value in rel.items():
        print(f"{name:<20}{value:>7.3f}{by_cpu.get(name, ''):>16}")
    best = best_of(runs)
    if fixed is not None and "conduitd" in best and best["conduitd"].seconds > fixed:
        rate = rows / (best["conduitd"].seconds - fixed)
        extra = f", {rate / best['drain'].rows_per_s:.2f} of the drain" if "drain" in best else ""
        print(f"conduitd without its fixed cost ({fixed:.2f}s on an empty stream): {rate:,.0f} rows/s{extra}")


# ---------------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, selected: list[str], bench: Bench,
                  payloads: Sequence[bytes]) -> tuple[list[list[Outcome]], dict[str, Any]]:
    info: dict[str, Any] = {}
    runs: list[list[Outcome]] = []
    try:
        info["postgresql"] = (await bench.admin("SHOW server_version"))[0][0]
        for repeat in range(args.repeat):
            await bench.reset_schema()
            bench.reference = None
            if "conduitd" in selected:
                fixed, fixed_cpu = await bench.fixed_cost()
                info.setdefault("conduitd_fixed_cost_s", []).append(round(fixed, 2))
                info.setdefault("conduitd_fixed_cost_client_cpu_s", []).append(round(fixed_cpu, 2))
                print(f"  conduitd over an empty {args.shards}-shard stream (start, imports, connect, setup, "
                      f"ListShards, one GetRecords a shard): {fixed:.2f}s, {fixed_cpu:.2f} CPU s", flush=True)
            # The ceiling first: it is the reference the other tables' checksums are compared with.
            rest = [p for p in selected if p != "ceiling"]
            rest = rest[repeat % len(rest):] + rest[:repeat % len(rest)] if rest else []
            order = (["ceiling"] if "ceiling" in selected else []) + rest
            outcomes: list[Outcome] = []
            for path in order:
                o = await bench.run(path, payloads)
                outcomes.append(o)
                print(f"  run {repeat + 1}/{args.repeat} {path:<11}{o.rows_per_s:>10,.0f} rows/s {o.seconds:7.2f}s  "
                      f"cpu s/M: client {o.cpu['client_s_per_m']:6.2f} postgres {o.cpu['postgres_own_s_per_m']:6.2f} "
                      f"(all {o.cpu['postgres_s_per_m']:6.2f}) "
                      f"server {o.cpu['server_s_per_m']:6.2f}  other {o.cpu['other_s']:6.2f}s  "
                      f"{'ok' if o.ok else 'FAILED ' + str(o.checks)}", flush=True)
            runs.append(outcomes)
    finally:
        if not args.keep:
            await bench.drop_schema()
    return runs, info


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS,
                        help=f"records put into the stream (default {DEFAULT_RECORDS:,}; loading is not timed but "
                             "takes 10-30 s per 100,000 on kinesalite, minutes on kinesis-local)")
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_RECORDS:,}-record smoke run")
    parser.add_argument("--shards", type=int, default=16, help="shards of the stream (default 16)")
    parser.add_argument("--server", choices=("kinesalite", "kinesis-local"), default="kinesalite",
                        help="the private local server to start (default kinesalite: several times faster to put into "
                             "and to read from)")
    parser.add_argument("--endpoint", help="use this running Kinesis endpoint instead of starting a server "
                                           "(its CPU is then not measured)")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL DSN (default: $CONDUITD_TEST_PG_DSN or local)")
    parser.add_argument("--batch-rows", type=int, default=50_000,
                        help="conduitd's batch.max_rows and the ceiling's rows per transaction (default 50,000)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--repeat", type=int, default=1, help="run every path this many times; best is reported")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each path, wait up to this long for the machine to be idle (shared hosts)")
    parser.add_argument("--profile", metavar="DIR", help="run conduitd under py-spy (raw, --threads) into "
                                                          "DIR/conduitd.pyspy.txt (slows it: do not use those rates)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    parser.add_argument("--keep", action="store_true", help="keep the destination schema")
    args = parser.parse_args(argv)
    if args.quick:
        args.records = QUICK_RECORDS
    wanted = args.paths.split(",")
    unknown = set(wanted) - set(PATHS)
    if unknown:
        parser.error(f"unknown path(s) {', '.join(sorted(unknown))}; known: {', '.join(PATHS)}")
    if min(args.records, args.repeat, args.batch_rows, args.shards) < 1:
        parser.error("--records, --repeat, --batch-rows and --shards must be positive")
    if "ceiling" not in wanted and set(wanted) & {"naive", "conduitd"}:
        print("note: without the ceiling path the tables' checksums have no reference (counts and sums are "
              "still checked)")
    return args, [p for p in PATHS if p in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    args, selected = parse_args(argv)
    runner = event_loop_runner()
    tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-kinesis-data-"))
    server = start_server(args.server, args.endpoint, shard_limit=max(50, 2 * args.shards + 2),
                          log=tmp / "server.log")
    try:
        data = generate(tmp, args.records, args.seed)
        kinesis = kh.client(server.endpoint, timeout=300.0)
        stream, empty = kh.new_stream_name("bench"), kh.new_stream_name("bench-empty")
        kh.create_stream(kinesis, stream, args.shards)
        kh.create_stream(kinesis, empty, args.shards)
        print(f"{server.kind} at {server.endpoint}; putting {data.rows:,} records ({data.nbytes / 1e6:.0f} MB) into "
              f"{args.shards} shards of {stream} (not timed)", flush=True)
        loaded = load_stream(kinesis, stream, data, PUT_THREADS)
        print(f"put {data.rows:,} records in {loaded.seconds:.1f}s ({data.rows / loaded.seconds:,.0f}/s; "
              f"{min(loaded.counts.values()):,}-{max(loaded.counts.values()):,} a shard)", flush=True)
        t0 = time.perf_counter()
        payloads = encode_batches(decode_records(data.path), args.batch_rows) if "ceiling" in selected else []
        print(f"pre-decoded and pre-encoded the ceiling's COPY buffers in {time.perf_counter() - t0:.1f}s "
              "(not timed)", flush=True)
        gc.collect()
        gc.freeze()  # the pre-encoded buffers cost the timed paths nothing
        bench = Bench(args, server, stream, empty, data, loaded)
        runs, info = runner(run_all(args, selected, bench, payloads))
        gc.unfreeze()
    finally:
        server.stop()
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()
    best = best_of(runs)
    rel = ratios(best)
    fixed = min(info["conduitd_fixed_cost_s"]) if info.get("conduitd_fixed_cost_s") else None
    load = os.getloadavg()[0]
    print_report(runs, rel, data.rows, fixed, load)
    import aiobotocore
    import botocore

    write_result(args.out, {
        "benchmark": "kinesis_to_postgres", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": data.rows, "bytes": data.nbytes, "bytes_per_record": round(data.nbytes / data.rows, 1),
        "shards": args.shards, "records_per_shard": loaded.counts, "server": server.kind,
        "put_seconds": round(loaded.seconds, 1), "put_records_per_s": round(data.rows / loaded.seconds),
        "batch_rows": args.batch_rows, "get_limit": GET_LIMIT, **info, "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": sys.version.split()[0], "aiobotocore": aiobotocore.__version__,
                     "botocore": botocore.__version__, "asyncpg": asyncpg.__version__},
        "rows_per_s_best": {p: round(o.rows_per_s) for p, o in best.items()}, "ratios": rel,
        "ratios_rows_per_cpu_s": cpu_ratios(best) if server.pid is not None else None,
        "runs": [[{"path": o.path, "seconds": round(o.seconds, 3), "rows": o.rows, "rows_per_s": round(o.rows_per_s),
                   "ok": o.ok, "cpu": o.cpu, "checks": o.checks} for o in run] for run in runs],
        "notes": [
            "loading the stream is setup, not timed; every path reads the whole stream from TRIM_HORIZON",
            "ceiling reads nothing from Kinesis: decoded and binary-COPY-encoded before timing",
            "drain: aiobotocore, one task per shard, GetRecords Limit 10000, no decoding or writes",
            "drain_fast: the drain with botocore's timestamp parser replaced by datetime.fromtimestamp (what "
            "botocore's default, dateutil in the local zone, costs every consumer)",
            "naive: botocore, shard after shard, json.loads per record, executemany + checkpoint update per page",
            "conduitd: `conduitd --once` subprocess, timed from process start to exit (fixed cost measured apart)",
            "client CPU = this process + reaped children (conduitd); server = the Kinesis server process, when "
            "this benchmark started it; the machine is shared: compare ratios from one run",
        ],
    })
    return 0 if all(o.ok for run in runs for o in run) else 1


if __name__ == "__main__":
    sys.exit(main())
