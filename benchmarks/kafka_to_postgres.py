"""Benchmark: Kafka -> PostgreSQL, conduitd end to end against a COPY ceiling and naive consumers.

    python benchmarks/kafka_to_postgres.py [--rows 1000000] [--dsn DSN] [--out FILE] [--repeat N]

Generates N order events with the data generator of ``files_to_postgres.py`` (~330 bytes, 10 fields:
ints, strings, timestamps, a decimal, a nested object; seeded, not timed), produces them once (not
timed) to a new 6-partition topic with aiokafka, keyed by id, record i on partition (i - 1) % 6, on
the broker in ``$KAFKA_BOOTSTRAP`` or else a private in-memory Tansu. Then, in this one process and
on one event loop (uvloop when installed), it loads the same rows by several paths, each into its
own fresh logged table with the same DDL (primary key on id) in a dedicated schema that is dropped
at the end, each Kafka path with a consumer group of its own:

* ``conduitd``: the real pipeline (Kafka source -> PostgreSQL append, batch max_rows 50000) through
  ``Runtime(config, once=True).run()``; timed from start to exit (group join included).
* ``copy_binary_preencoded``: asyncpg ``copy_to_table(format="binary")`` of buffers pre-encoded
  (not timed) by conduitd's ``encode_copy_binary``, 50k-row transactions that also update a
  checkpoint row: the server's ceiling. Reads nothing from Kafka.
* ``aiokafka_executemany``: the naive consumer: aiokafka ``getmany``, ``json.loads`` per record,
  asyncpg ``executemany`` INSERT of the batch, then commit the group offsets; timed until all N
  rows are in.
* ``quixstreams``: Quix Streams' ``PostgreSQLSink`` on the same topic, in a subprocess (its own
  interpreter when quixstreams cannot share this one; see ``--quix-python``). Skipped, with the
  reason recorded, when it cannot be installed or run.

Every path is verified (count == count(distinct id) == N, ids 1..N, exact ``sum(amount)`` against
the Decimal sum computed at generation; every Kafka path's table is also compared row for row with
the ceiling's table); conduitd's checkpoints must equal the per-partition record counts.
Results and machine info are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root holds `benchmarks` and `tests`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.files_to_postgres import (
    COLUMNS,
    Bench,
    CpuSnapshot,
    Dataset,
    Outcome,
    Record,
    add_common_arguments,
    check_common_arguments,
    decode_records,
    encode_batches,
    event_loop_runner,
    generate,
    machine_info,
    result_header,
    wait_until_idle,
    write_result,
)
from benchmarks.listener import pid_listening_on
from benchmarks.thread_cpu import ThreadCpu, print_threads
from benchmarks.timeline import BatchTimeline
from conduitd.config import (
    BatchConfig,
    Config,
    KafkaSourceConfig,
    PipelineConfig,
    PostgresDestinationConfig,
)
from conduitd.runtime.supervisor import Runtime

DEFAULT_OUT = "benchmarks/results/kafka_to_postgres.json"
PATHS = ("conduitd", "copy_binary_preencoded", "aiokafka_executemany", "quixstreams")
KAFKA_PATHS = ("conduitd", "aiokafka_executemany", "quixstreams")
CEILING = "copy_binary_preencoded"
# What the tests use (tests/helpers/kafka.py, KAFKA.md): group joins take 24-45 s with the defaults.
GROUP_TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
QUIX_VENV_PYTHON = Path.home() / ".cache" / "conduitd-bench-quix" / "bin" / "python"
PIPELINE = "orders"  # conduitd's pipeline name, as stored in its checkpoints


@dataclass
class KafkaOutcome(Outcome):
    """An outcome with the steady state: the rate from the first commit to the last."""

    first_commit_s: float | None = None
    """Seconds from the start to the first committed batch (group join, first fetch, first batch)."""
    steady_rows_per_s: float | None = None
    """Rows committed after the first commit / seconds from the first commit to the last."""
    skipped: str | None = None

    def set_steady(self, commits: Sequence[tuple[float, int]], started: float) -> None:
        """`commits`: (time, rows committed so far) after each commit, on the clock of `started`."""
        if not commits:
            return
        (t_first, rows_first), (t_last, rows_last) = commits[0], commits[-1]
        self.first_commit_s = t_first - started
        if t_last > t_first:
            self.steady_rows_per_s = (rows_last - rows_first) / (t_last - t_first)


# ---------------------------------------------------------------------------------------------
# The broker and the topic (not timed)


@dataclass
class Broker:
    bootstrap: str
    pid: int | None  # a private Tansu's process, for its CPU time
    kind: str


def start_broker(stack: contextlib.ExitStack) -> Broker:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        # A local broker's process is found by its listening port, so its CPU is billed too.
        pid = pid_listening_on(bootstrap)
        return Broker(bootstrap, pid, f"KAFKA_BOOTSTRAP ({'pid ' + str(pid) if pid else 'CPU not measured'})")
    from tests.helpers.kafka import start_tansu

    tansu = start_tansu()
    stack.callback(tansu.stop)
    return Broker(tansu.bootstrap, tansu.process.pid, "tansu (private, in-memory)")


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


def json_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        for line in handle:
            yield line.rstrip(b"\n")


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


async def measure_group_join(bootstrap: str, topic: str) -> float:
    """Seconds from subscribing to having partitions, for a new group (a broker property: Tansu, like Kafka's
    group.initial.rebalance.delay.ms, holds a new group's first join ~3 s whatever the client)."""
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

    joined = asyncio.Event()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: object) -> None:
            pass

        async def on_partitions_assigned(self, assigned: object) -> None:
            if assigned:
                joined.set()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"bench-join-probe-{uuid.uuid4().hex[:6]}",
                                session_timeout_ms=GROUP_TIMEOUTS["session.timeout.ms"],
                                heartbeat_interval_ms=GROUP_TIMEOUTS["heartbeat.interval.ms"])
    started = time.perf_counter()
    await consumer.start()
    try:
        consumer.subscribe([topic], listener=Listener())
        await asyncio.wait_for(joined.wait(), 60)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def produce_topic(bootstrap: str, topic: str, partitions: int, data: Dataset) -> list[int]:
    """Create the topic and produce every line of the dataset to it, record i (1-based, key i) to
    partition (i - 1) % partitions; return the record count per partition."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=200, max_batch_size=1 << 20,
                                max_request_size=8 << 20, acks=1)
    await producer.start()
    counts = [0] * partitions
    try:
        builders = [producer.create_batch() for _ in range(partitions)]
        sent: list[asyncio.Future[Any]] = []
        for i, value in enumerate(json_lines(data.path)):
            p = i % partitions
            key = str(i + 1).encode()
            if builders[p].append(key=key, value=value, timestamp=None) is None:
                sent.append(await producer.send_batch(builders[p], topic, partition=p))
                builders[p] = producer.create_batch()
                if builders[p].append(key=key, value=value, timestamp=None) is None:
                    raise RuntimeError(f"record {i + 1} does not fit in a producer batch")
            counts[p] += 1
        for p, builder in enumerate(builders):
            if builder.record_count():
                sent.append(await producer.send_batch(builder, topic, partition=p))
        await asyncio.gather(*sent)
        await producer.flush()
    finally:
        await producer.stop()
    return counts


# ---------------------------------------------------------------------------------------------
# The paths (timed)


class KafkaBench(Bench):
    paths = PATHS

    def __init__(self, dsn: str, schema: str, batch_rows: int, bootstrap: str, topic: str,
                 partition_counts: Sequence[int], quix_python: str | None, quix_skip: str | None) -> None:
        super().__init__(dsn, schema, batch_rows)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partition_counts = list(partition_counts)
        self.rows = sum(partition_counts)
        self.quix_python = quix_python
        self.quix_skip = quix_skip
        self.quix_version: str | None = None
        self.repeat = 0
        self.profile: str | None = None
        self.profile_gil = False
        self.group_join_s: float | None = None

    def group(self, path: str) -> str:
        return f"bench-{path}-{os.getpid()}-{self.repeat}-{uuid.uuid4().hex[:6]}"

    # -- conduitd ----------------------------------------------------------------------------

    def kafka_conduitd_config(self) -> Config:
        return Config(
            sources=(KafkaSourceConfig(name="orders_kafka", type="kafka", brokers=self.bootstrap,
                                       topics=(self.topic,), group_id=self.group("conduitd"),
                                       client=dict(GROUP_TIMEOUTS)),),
            destinations=(PostgresDestinationConfig(name="pg", type="postgres", dsn=self.dsn,
                                                    db_schema=self.schema),),
            resources=(PipelineConfig(name=PIPELINE, source="orders_kafka", destination="pg", table="conduitd",
                                      mode="append", batch=BatchConfig(max_rows=self.batch_rows)),),
        )

    async def run_conduitd(self) -> KafkaOutcome:  # type: ignore[override]
        config = self.kafka_conduitd_config()
        profiler = start_py_spy(self.profile, self.profile_gil) if self.profile else None
        wall_started = time.time()
        started = time.perf_counter()
        runtime = Runtime(config, once=True)
        status = runtime.pipelines[0].status
        commits: list[tuple[float, int]] = []

        async def watch() -> None:  # (time of the last commit, rows so far) whenever a batch commits
            seen = 0
            while True:
                if status.batches != seen and status.last_commit is not None:
                    seen = status.batches
                    commits.append((status.last_commit - wall_started, status.rows_written))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        error: str | None = None
        try:
            code = int(await runtime.run())
        except BaseException as exc:  # noqa: BLE001 - recorded; the path fails its checks
            code, error = -1, repr(exc)
        seconds = time.perf_counter() - started
        watcher.cancel()
        if status.batches and (not commits or commits[-1][1] != status.rows_written):
            commits.append((status.last_commit - wall_started, status.rows_written))  # type: ignore[operator]
        if profiler is not None:
            stop_py_spy(profiler)
        status = runtime.statuses()[0]
        outcome = KafkaOutcome("conduitd", seconds, status.rows_written, status.batches)
        outcome.set_steady(commits, 0.0)
        outcome.checks.update(exit_code=code, rows_read=status.rows_read, dlq_rows=status.dlq_rows,
                              state=status.state)
        if error:
            outcome.checks["error"] = error
        outcome.ok = code == 0 and status.dlq_rows == 0 and status.state == "done"
        return outcome

    # -- the ceiling -------------------------------------------------------------------------

    async def run_ceiling(self, payloads: Sequence[bytes]) -> KafkaOutcome:
        commits: list[float] = []

        def timed() -> Iterator[bytes]:  # the next batch is asked for when the previous one committed
            for payload in payloads:
                commits.append(time.perf_counter())
                yield payload

        started = time.perf_counter()
        base = await self.run_preencoded(timed())  # type: ignore[arg-type]
        ended = started + base.seconds
        outcome = KafkaOutcome(CEILING, base.seconds, base.rows, base.batches)
        marks = [*commits[1:], ended]
        sizes = [min(self.batch_rows, self.rows - k * self.batch_rows) for k in range(len(marks))]
        outcome.set_steady([(t, sum(sizes[:k + 1])) for k, t in enumerate(marks)], started)
        return outcome

    # -- the naive consumer --------------------------------------------------------------------

    async def run_naive(self, stall_timeout: float = 60.0) -> KafkaOutcome:
        from aiokafka import AIOKafkaConsumer

        path = "aiokafka_executemany"
        sql = (f"INSERT INTO {self.q(path)} ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")
        loads, dumps, parse = json.loads, json.dumps, datetime.fromisoformat
        started = time.perf_counter()
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=self.group(path), enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=GROUP_TIMEOUTS["session.timeout.ms"],
            heartbeat_interval_ms=GROUP_TIMEOUTS["heartbeat.interval.ms"])
        await consumer.start()
        conn = await self.connect_path()
        commits: list[tuple[float, int]] = []
        count = batches = 0
        last_progress = time.monotonic()
        try:
            while count < self.rows:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=self.batch_rows)
                rows = []
                for messages in fetched.values():
                    for m in messages:
                        d = loads(m.value, parse_float=Decimal)
                        rows.append((d["id"], d["order_uuid"], d["customer"], d["amount"], d["currency"],
                                     parse(d["created_at"]), parse(d["updated_at"]), dumps(d["details"]),
                                     d["paid"], d["quantity"]))
                if not rows:
                    if time.monotonic() - last_progress > stall_timeout:
                        raise TimeoutError(f"no records for {stall_timeout:.0f}s after {count} rows")
                    continue
                await conn.executemany(sql, rows)  # one implicit transaction
                await consumer.commit()
                count += len(rows)
                batches += 1
                last_progress = time.monotonic()
                commits.append((time.perf_counter(), count))
        finally:
            await self.close_path(conn)
            await consumer.stop()
        outcome = KafkaOutcome(path, time.perf_counter() - started, -1, batches)
        outcome.set_steady(commits, started)
        outcome.checks["mean_batch_rows"] = round(count / batches) if batches else 0
        return outcome

    # -- Quix Streams --------------------------------------------------------------------------

    async def run_quix(self) -> KafkaOutcome:
        path = "quixstreams"
        if self.quix_python is None:
            outcome = KafkaOutcome(path, 0.0, 0, 0, skipped=self.quix_skip)
            outcome.checks["skipped"] = self.quix_skip
            return outcome
        dsn = parse_dsn(self.dsn)
        spec = {"bootstrap": self.bootstrap, "topic": self.topic, "group": self.group(path), "rows": self.rows,
                "commit_every": self.batch_rows, "schema": self.schema, "table": path, "pg": dsn,
                "consumer_extra_config": GROUP_TIMEOUTS, "state_dir": tempfile.mkdtemp(prefix="conduitd-quix-")}
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                self.quix_python, "-c", QUIX_WORKER, json.dumps(spec),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=max(300, self.rows / 2000))
            except TimeoutError:
                process.kill()
                stdout, stderr = await process.communicate()
        finally:
            shutil.rmtree(str(spec["state_dir"]), ignore_errors=True)
        wall = time.perf_counter() - started
        result = next((orjson.loads(line[len(b"QUIX_RESULT "):]) for line in stdout.splitlines()
                       if line.startswith(b"QUIX_RESULT ")), None)
        if process.returncode != 0 or result is None:
            reason = (f"quixstreams ran but failed against this broker/database (exit code {process.returncode}): "
                      + stderr.decode(errors="replace")[-1500:])
            outcome = KafkaOutcome(path, wall, 0, 0, skipped=reason, ok=False)
            outcome.checks["skipped"] = reason
            return outcome
        self.quix_version = result["quixstreams"]
        outcome = KafkaOutcome(path, result["seconds"], -1, result["flushes"])
        outcome.set_steady([(t, n) for t, n in result["commits"]], 0.0)
        outcome.checks.update(wall_seconds_with_interpreter_start=round(wall, 3),
                              import_seconds=round(result["import_seconds"], 3),
                              quixstreams=result["quixstreams"], confluent_kafka=result["confluent_kafka"],
                              rows_written_by_sink=result["rows"])
        return outcome

    # -- verification ------------------------------------------------------------------------

    async def verify(self, outcome: Outcome, data: Dataset) -> None:
        await super().verify(outcome, data)
        got = (await self.admin(f"SELECT count(*) AS n, count(DISTINCT id) AS ids FROM {self.q(outcome.path)}"))[0]
        checks: dict[str, Any] = {"distinct_ids": got["ids"], "distinct_ids_ok": got["ids"] == got["n"] == data.rows}
        if outcome.path == "conduitd":
            rows = await self.admin(
                f"SELECT partition, position::text AS position FROM {self.q('conduitd_checkpoints')} "
                "WHERE pipeline = $1", PIPELINE)
            stored = {r["partition"]: orjson.loads(r["position"]) for r in rows}
            wanted = {f"{self.topic}:{p}": {"offset": n} for p, n in enumerate(self.partition_counts)}
            checks["checkpoints"] = {k.rpartition(":")[2]: v.get("offset") for k, v in sorted(stored.items())}
            checks["checkpoints_ok"] = stored == wanted
        outcome.checks.update(checks)
        outcome.ok = outcome.ok and all(v for k, v in checks.items() if k.endswith("_ok"))


def parse_dsn(dsn: str) -> dict[str, Any]:
    """psycopg2 connection keywords from a postgresql:// URL (for the Quix sink)."""
    from urllib.parse import unquote, urlsplit

    url = urlsplit(dsn)
    return {"host": url.hostname or "127.0.0.1", "port": url.port or 5432, "dbname": url.path.lstrip("/"),
            "user": unquote(url.username or ""), "password": unquote(url.password or "")}


# The Quix Streams path, run by an interpreter that has quixstreams[postgresql] (argv[1]: a JSON spec).
# The sink's rows are plain JSON values: ids and ints, strings for the uuid and the timestamps (cast by
# the server), a float for the amount (psycopg2 writes its repr: exact in numeric(12,2)), a dict for
# the details (jsonb). The table exists (same DDL): no schema updates, no metadata columns.
QUIX_WORKER = r'''
import json, sys, time
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
import confluent_kafka, quixstreams
from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink
import_seconds = time.perf_counter() - t0
commits, written = [], [0]

class TimedSink(PostgreSQLSink):
    def write(self, batch):  # one topic partition per call, one transaction each
        super().write(batch)
        written[0] += batch.size
        commits.append((time.perf_counter() - started, written[0]))
        if written[0] >= spec["rows"]:
            app.stop()  # graceful: this checkpoint still commits its offsets

started = time.perf_counter()
app = Application(broker_address=spec["bootstrap"], consumer_group=spec["group"], auto_offset_reset="earliest",
                  commit_every=spec["commit_every"], consumer_extra_config=spec["consumer_extra_config"],
                  state_dir=spec["state_dir"], use_changelog_topics=False, loglevel="WARNING")
sink = TimedSink(**spec["pg"], table_name=spec["table"], schema_name=spec["schema"], schema_auto_update=False,
                 include_metadata=False)
sdf = app.dataframe(app.topic(spec["topic"], value_deserializer="json"))
sdf.sink(sink)
app.run()
seconds = time.perf_counter() - started
print("QUIX_RESULT " + json.dumps({"seconds": seconds, "import_seconds": import_seconds, "rows": written[0],
      "flushes": len(commits), "commits": commits, "quixstreams": quixstreams.__version__,
      "confluent_kafka": confluent_kafka.__version__}), flush=True)
'''


def find_quix_python(explicit: str | None) -> tuple[str | None, str | None]:
    """The interpreter for the Quix path, or None and why it is skipped."""
    candidates = [explicit] if explicit else [sys.executable, str(QUIX_VENV_PYTHON)]
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import quixstreams.sinks.community.postgresql"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return python, None
        if explicit:
            return None, f"{explicit} cannot import quixstreams' PostgreSQL sink: {probe.stderr.strip()[-500:]}"
    return None, (
        "quixstreams is not importable here and no --quix-python was given. `pip install quixstreams` into "
        "conduitd's environment works but downgrades confluent-kafka to <2.13 (quixstreams pins "
        "confluent-kafka<2.13; conduitd is run with 2.16), so install it in a venv of its own: "
        f"python -m venv {QUIX_VENV_PYTHON.parent.parent} && "
        f"{QUIX_VENV_PYTHON.parent / 'pip'} install 'quixstreams[postgresql]'")


# ---------------------------------------------------------------------------------------------
# Profiling (py-spy, on this process, during the conduitd path only)


def start_py_spy(out: str, gil: bool) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["py-spy", "record", "--threads", "--nonblocking", "-r", "250", "-f", "raw",
                                *(["--gil"] if gil else []), "-o", out, "--pid", str(os.getpid())],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach
    return process


def stop_py_spy(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def summarize_profile(path: str, top: int = 12) -> dict[str, Any]:
    """Per thread: share of the active samples; the functions with the most self and total time."""
    threads: Counter[str] = Counter()
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    total_time: dict[str, Counter[str]] = defaultdict(Counter)
    names: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "?")
        tid, _, name = thread.partition(": ")
        if name:
            names[tid] = name
        thread = tid
        calls = [f for f in frames if not f.startswith(("process ", "thread "))]
        n = int(count)
        threads[thread] += n
        if calls:
            self_time[thread][calls[-1]] += n
        for frame in set(calls):
            total_time[thread][frame] += n
    active = sum(threads.values()) or 1
    out: dict[str, Any] = {"samples": active, "threads": {}}
    for thread, n in threads.most_common():
        if n / active < 0.005:
            break
        out["threads"][f"{thread}: {names[thread]}" if thread in names else thread] = {
            "share_of_samples": round(n / active, 3),
            "self": [(f, round(c / n, 3)) for f, c in self_time[thread].most_common(top)],
            "total": [(f, round(c / n, 3)) for f, c in total_time[thread].most_common(top)],
        }
    return out


# ---------------------------------------------------------------------------------------------
# Reporting


def source_tree() -> dict[str, Any]:
    """The commit measured and the files of conduitd/ that differ from it (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "--no-optional-locks", "diff", "--name-only", "HEAD", "--", "conduitd"],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git_commit": commit, "conduitd_files_changed_since_commit": changed}


def ratios(best: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for a, b in (("conduitd", CEILING), ("conduitd", "aiokafka_executemany"), ("conduitd", "quixstreams"),
                 ("aiokafka_executemany", CEILING), ("quixstreams", CEILING)):
        if best.get(a) and best.get(b):
            out[f"{a}/{b}"] = round(best[a] / best[b], 3)
    return out


def steady_ratios(runs: list[list[KafkaOutcome]]) -> dict[str, float]:
    """The same ratios from the steady rates (first commit to last): without the group join and the first batch."""
    best: dict[str, float] = {}
    for o in (o for run_ in runs for o in run_ if not o.skipped):
        if o.steady_rows_per_s:
            best[o.path] = max(best.get(o.path, 0.0), o.steady_rows_per_s)
    return ratios(best)


def join_bound(rows: int, ceiling_rows_per_s: float | None, join_s: float | None) -> float | None:
    """The end-to-end ratio to the ceiling of a Kafka path as fast as the ceiling but for the group join."""
    if not ceiling_rows_per_s or join_s is None:
        return None
    loading = rows / ceiling_rows_per_s
    return round(loading / (loading + join_s), 3)


# Issue 16's targets: end to end at 1M records (group join included) and at the steady rate.
TARGETS = {"conduitd/copy_binary_preencoded": 0.5, "conduitd/aiokafka_executemany": 2.5}
STEADY_TARGETS = {"conduitd/copy_binary_preencoded": 0.67, "conduitd/aiokafka_executemany": 2.5}


def print_report(runs: list[list[KafkaOutcome]], rel: dict[str, float], steady_rel: dict[str, float], data: Dataset,
                 bound: float | None) -> None:
    print(f"\n{data.rows:,} records, {data.nbytes / 1e6:.0f} MB of JSON ({data.nbytes / data.rows:.0f} B/record)")
    print("CPU seconds per million records of the best run: client = this process and its children (conduitd "
          "or the baseline), pg own = the path's own PostgreSQL backends, pg all = every postgres process (other "
          "sessions' too), broker = the Kafka broker's process; other = CPU seconds of everything else")
    print(f"{'path':<24}{'rows/s (best)':>14}{'seconds':>8}{'1st commit':>11}{'steady rows/s':>14}"
          f"{'batches':>8}{'client':>8}{'pg own':>8}{'pg all':>8}{'broker':>7}{'other s':>8}  {'verified':<9}"
          "all runs (rows/s)")
    for path in PATHS:
        outcomes = [o for run in runs for o in run if o.path == path]
        if not outcomes:
            continue
        if all(o.skipped for o in outcomes):
            print(f"{path:<24}{'skipped':>15}  {outcomes[0].skipped}")
            continue
        measured = [o for o in outcomes if not o.skipped]
        fastest = max(measured, key=lambda o: o.rows_per_s)
        samples = ", ".join(f"{o.rows_per_s:,.0f}" + (f" (steady {o.steady_rows_per_s:,.0f})"
                                                       if o.steady_rows_per_s else "") for o in measured)
        verified = "ok" if all(o.ok for o in outcomes) else "FAILED"
        first = f"{fastest.first_commit_s:.2f}s" if fastest.first_commit_s is not None else "-"
        steady = f"{fastest.steady_rows_per_s:,.0f}" if fastest.steady_rows_per_s else "-"
        cpu = fastest.checks.get("cpu", {})
        per_m = 1e6 / data.rows
        broker = f"{cpu['broker_cpu_s'] * per_m:.2f}" if cpu.get("broker_cpu_s") else "-"
        print(f"{path:<24}{fastest.rows_per_s:>14,.0f}{fastest.seconds:>8.2f}{first:>11}{steady:>14}"
              f"{fastest.batches:>8}{cpu.get('client_cpu_s', 0) * per_m:>8.2f}"
              f"{cpu.get('postgres_own_cpu_s', 0) * per_m:>8.2f}{cpu.get('postgres_cpu_s', 0) * per_m:>8.2f}"
              f"{broker:>7}{cpu.get('other_cpu_s', 0):>8.2f}  "
              f"{verified:<9}{samples}")
    print("\nratios of the best runs" + ("; per repeat:" if len(runs) > 1 else ""))
    per_repeat = [ratios(rates(run_)) for run_ in runs] if len(runs) > 1 else []
    for name, value in rel.items():
        extra = "  (" + ", ".join(f"{r[name]:.2f}" for r in per_repeat if name in r) + ")" if per_repeat else ""
        target = TARGETS.get(name)
        verdict = f"   target >= {target}: {'met' if value >= target else 'MISSED'}" if target else ""
        print(f"{name:<44}{value:>6.2f}{extra}{verdict}")
    if steady_rel:
        print("\nratios of the steady rates (first commit to last: no group join, no first batch)")
        for name, value in steady_rel.items():
            target = STEADY_TARGETS.get(name)
            verdict = f"   target >= {target}: {'met' if value >= target else 'MISSED'}" if target else ""
            print(f"{name:<44}{value:>6.2f}{verdict}")
    if bound is not None:
        print(f"\na path that waits as long as aiokafka's group join measured before the runs is capped at "
              f"{bound:.2f} of the ceiling end to end at {data.rows:,} rows (its `1st commit` column shows "
              "what each path waited)")


def rates(run: Sequence[KafkaOutcome]) -> dict[str, float]:
    return {o.path: o.rows_per_s for o in run if not o.skipped}


def outcome_json(o: KafkaOutcome) -> dict[str, Any]:
    return {"path": o.path, "seconds": round(o.seconds, 3), "rows": o.rows, "batches": o.batches,
            "rows_per_s": round(o.rows_per_s) if not o.skipped else None,
            "first_commit_s": round(o.first_commit_s, 3) if o.first_commit_s is not None else None,
            "steady_rows_per_s": round(o.steady_rows_per_s) if o.steady_rows_per_s else None,
            "skipped": o.skipped, "ok": o.ok, "checks": o.checks}


# ---------------------------------------------------------------------------------------------


async def run_paths(args: argparse.Namespace, selected: list[str], broker: Broker, data: Dataset,
                    records: Sequence[Record], payloads: Sequence[bytes], quix: tuple[str | None, str | None],
                    ) -> tuple[list[list[KafkaOutcome]], dict[str, Any], KafkaBench]:
    """Produce the topic, then every selected path, `--repeat` times, each verified."""
    topic = f"bench-orders-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    counts = await produce_topic(broker.bootstrap, topic, args.partitions, data)
    print(f"produced {sum(counts):,} records to {topic} ({args.partitions} partitions) on {broker.kind} "
          f"in {time.perf_counter() - t0:.1f}s (not timed)", flush=True)
    bench = KafkaBench(args.dsn, f"bench_kafka_to_pg_{os.getpid()}", args.batch_rows, broker.bootstrap, topic,
                       counts, *quix)
    bench.group_join_s = await measure_group_join(broker.bootstrap, topic)
    print(f"a new consumer group joins in {bench.group_join_s:.2f}s on this broker (paid by every Kafka path)")
    bench.profile, bench.profile_gil = args.profile, args.profile_gil
    server_version = (await bench.admin("SHOW server_version"))[0][0]
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    runs: list[list[KafkaOutcome]] = []
    try:
        for repeat in range(args.repeat):
            bench.repeat = repeat
            await bench.reset_schema()
            outcomes: list[KafkaOutcome] = []
            order = selected[repeat % len(selected):] + selected[:repeat % len(selected)]  # spread drift
            for path in order:
                await bench.settle()
                busy = await wait_until_idle(args.wait_idle) if args.wait_idle > 0 else None
                load = os.getloadavg()[0]
                cpu_before, broker_before, children_before = CpuSnapshot.take(), process_cpu(broker.pid), children_cpu()
                with BatchTimeline() as timeline:
                    async with bench.own_backends() as own, ThreadCpu() as threads:
                        if path == "conduitd":
                            outcome = await bench.run_conduitd()
                        elif path == CEILING:
                            outcome = await bench.run_ceiling(payloads)
                        elif path == "aiokafka_executemany":
                            outcome = await bench.run_naive()
                        else:  # its psycopg2 connections are not named: only `postgres` (all) bills them
                            outcome = await bench.run_quix()
                await asyncio.sleep(0.3)  # let the postmaster reap the path's backend: its CPU joins cutime
                cpu = CpuSnapshot.take().since(cpu_before, data.rows, own.seconds)
                broker_cpu = process_cpu(broker.pid) - broker_before
                children = children_cpu() - children_before  # the Quix worker (and py-spy) run as subprocesses
                cpu["broker_cpu_s"] = round(broker_cpu, 2)
                cpu["client_cpu_s"] = round(cpu["client_cpu_s"] + children, 2)
                cpu["client_cpu_us_per_row"] = round(cpu["client_cpu_s"] * 1e6 / data.rows, 2)
                cpu["other_cpu_s"] = round(max(0.0, cpu["other_cpu_s"] - broker_cpu - children), 2)
                outcome.checks["cpu"] = cpu
                outcome.checks["load_average_1m_before"] = round(load, 2)
                if busy is not None:
                    outcome.checks["machine_busy_before"] = round(busy, 2)
                if not outcome.skipped:
                    await bench.verify(outcome, data)
                outcomes.append(outcome)
                if outcome.skipped:
                    print(f"  run {repeat + 1}/{args.repeat} {path:<22} skipped: {outcome.skipped[:300]}", flush=True)
                    continue
                steady = f"{outcome.steady_rows_per_s:>9,.0f}" if outcome.steady_rows_per_s else f"{'-':>9}"
                print(f"  run {repeat + 1}/{args.repeat} {path:<22} {outcome.rows_per_s:>9,.0f} rows/s "
                      f"{outcome.seconds:6.2f}s (steady {steady} rows/s)  cpu: client {cpu['client_cpu_s']:5.2f}s "
                      f"postgres {cpu['postgres_own_cpu_s']:5.2f}s (all {cpu['postgres_cpu_s']:5.2f}s) "
                      f"broker {cpu['broker_cpu_s']:5.2f}s "
                      f"other {cpu['other_cpu_s']:5.2f}s  "
                      f"{'ok' if outcome.ok else 'FAILED ' + str(outcome.checks)}", flush=True)
                print_threads(threads.by_role(), data.rows, cpu)
                if args.timeline and path == "conduitd":
                    timeline.print()
            if repeat == args.repeat - 1:
                await final_checks(bench, outcomes, records)
            runs.append(outcomes)
    finally:
        if not args.keep_schema:
            await bench.drop_schema()
    return runs, machine_info(server_version, loop), bench


async def final_checks(bench: KafkaBench, outcomes: list[KafkaOutcome], records: Sequence[Record]) -> None:
    """Value-level checks of every Kafka path: a spot check, and the same rows as the ceiling's table."""
    ceiling = any(o.path == CEILING and o.ok for o in outcomes)
    for outcome in outcomes:
        if outcome.path not in KAFKA_PATHS or outcome.skipped:
            continue
        problems = await bench.spot_check(outcome.path, records)
        outcome.checks["spot_check_ok"] = not problems
        if problems:
            outcome.checks["spot_check_problems"] = problems[:20]
        if ceiling:
            differing = await bench.compare_tables(outcome.path, CEILING)
            outcome.checks["rows_differing_from_ceiling"] = differing
            outcome.checks["same_rows_as_ceiling_ok"] = differing == 0
        outcome.ok = outcome.ok and all(v for k, v in outcome.checks.items() if k.endswith("_ok"))
        print(f"  {outcome.path} value checks: {'ok' if outcome.ok else outcome.checks}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_arguments(parser, PATHS, "records to produce", DEFAULT_OUT)
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--quix-python", default=os.environ.get("QUIX_PYTHON"), metavar="PYTHON",
                        help="interpreter with quixstreams[postgresql] for the Quix path (default: $QUIX_PYTHON, "
                             f"else this one if it has quixstreams, else {QUIX_VENV_PYTHON} if it exists)")
    parser.add_argument("--profile", metavar="FILE", help="py-spy (raw, --threads) of this process during the "
                        "conduitd path into FILE; a summary goes into the JSON")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only samples holding the GIL")
    args = parser.parse_args(argv)
    check_common_arguments(parser, args, PATHS)
    if args.partitions < 1:
        parser.error("--partitions must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [p for p in PATHS if p in set(args.paths.split(","))]
    runner = event_loop_runner()
    quix = find_quix_python(args.quix_python) if "quixstreams" in selected else (None, "not selected")
    tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            broker = start_broker(stack)
            t0 = time.perf_counter()
            data = generate(tmp, args.rows, args.seed)
            print(f"generated {data.rows:,} records ({data.nbytes / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s")
            t0 = time.perf_counter()
            records = decode_records(data.path)
            payloads = encode_batches(records, args.batch_rows) if CEILING in selected else []
            print(f"pre-decoded tuples{' and pre-encoded COPY buffers' if payloads else ''} "
                  f"in {time.perf_counter() - t0:.1f}s (not timed)")
            # The pre-decoded rows must not cost the timed paths anything: no collection traverses them.
            gc.collect()
            gc.freeze()
            runs, machine, bench = runner(run_paths(args, selected, broker, data, records, payloads, quix))
            gc.unfreeze()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {p: max(o.rows_per_s for run_ in runs for o in run_ if o.path == p)
            for p in selected if any(o.path == p and not o.skipped for run_ in runs for o in run_)}
    rel = ratios(best)
    steady = steady_ratios(runs)
    bound = join_bound(data.rows, best.get(CEILING), bench.group_join_s)
    print_report(runs, rel, steady, data, bound)
    profile = summarize_profile(args.profile) if args.profile and Path(args.profile).exists() else None
    import aiokafka
    import confluent_kafka

    machine.update(aiokafka=aiokafka.__version__, confluent_kafka=confluent_kafka.__version__,
                   librdkafka=confluent_kafka.libversion()[0],
                   quixstreams=bench.quix_version, broker=broker.kind, **source_tree())
    result = {
        **result_header("kafka_to_postgres", data),
        "partitions": args.partitions,
        "partition_counts": bench.partition_counts,
        "batch_rows": args.batch_rows,
        "repeat": args.repeat,
        "seed": args.seed,
        "rows_per_s_best": {p: round(v) for p, v in best.items()},
        "steady_rows_per_s_best": {p: round(max(o.steady_rows_per_s or 0 for run_ in runs for o in run_
                                                if o.path == p)) for p in best},
        "ratios": rel,
        "steady_ratios": steady,
        "group_join_s": round(bench.group_join_s, 3) if bench.group_join_s is not None else None,
        "end_to_end_ratio_cap_from_group_join": bound,
        "targets": {k: {"target": v, "measured": rel.get(k), "met": rel[k] >= v if k in rel else None,
                        "measured_steady": steady.get(k), "met_steady": steady[k] >= v if k in steady else None}
                    for k, v in TARGETS.items()},
        "ratios_per_repeat": [ratios(rates(run_)) for run_ in runs],
        "skipped": {o.path: o.skipped for run_ in runs for o in run_ if o.skipped},
        "runs": [[outcome_json(o) for o in run_] for run_ in runs],
        "profile": profile,
        "machine": machine,
        "notes": [
            "one process, one event loop; paths run one after another with a CHECKPOINT before each; the broker "
            "runs on the same machine (its CPU is broker_cpu_s)",
            "the topic is produced once, untimed; every Kafka path reads all of it with a consumer group of its own "
            "(session.timeout.ms 6000, heartbeat.interval.ms 500) and is timed from start to exit, group join "
            "included; first_commit_s and steady_rows_per_s (first commit to last) show the steady state",
            "copy_binary_preencoded reads nothing from Kafka: pre-decoded, pre-encoded (not timed), 50k-row "
            "transactions that also update a checkpoint row",
            "aiokafka_executemany: getmany(max_records=batch_rows), json.loads(parse_float=Decimal) per record, one "
            "executemany per getmany, then the group offsets are committed (at-least-once, not exactly-once)",
            "quixstreams: Application + PostgreSQLSink (psycopg2 execute_values; one transaction per partition per "
            "checkpoint, commit_every=batch_rows), in a subprocess; timed from Application() to the end of run() "
            "(imports and interpreter start not timed); at-least-once (offsets committed after the sink flush)",
            "conduitd: positions stored in the destination in the same transaction as the rows (exactly-once)",
            "gc thresholds as set by the conduitd CLI: (100000, 50, 100); pre-decoded rows are gc-frozen",
            "tables: same DDL, logged, primary key on id, autovacuum off",
        ],
    }
    write_result(args.out, result)
    return 0 if all(o.ok or o.skipped for run_ in runs for o in run_) else 1


if __name__ == "__main__":
    sys.exit(main())
