"""Benchmark: database table -> PostgreSQL by polling CDC, conduitd against the COPY ceiling and a
naive poller, side by side in one run.

    python benchmarks/cdc_to_postgres.py [--rows 1000000] [--quick] [--mysql] [--log] [--repeat N] [--profile DIR]

Creates N rows (bigint id primary key, timestamptz updated_at indexed, text/numeric/int/bool
columns, ~100 bytes a row; deterministic, not timed) in a PostgreSQL database of its own (the
late-commit bound of the timestamp strategy looks at every write transaction of the source's
database, so the destination is elsewhere: a schema of its own in the DSN's database). Then copies
them by several paths, each into its own fresh destination table with the same DDL:

* ``copy_pipe_asyncpg``: ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` on one asyncpg connection
  streamed into ``COPY ... FROM STDIN (FORMAT binary)`` on another, one statement each.
* ``copy_pipe_psql``: the same two COPY statements by two ``psql`` processes joined by a pipe.
  The ceiling is the faster of the two pipes in the run.
* ``naive_poller``: ``SELECT ... WHERE updated_at > $1 ORDER BY updated_at LIMIT 10000`` and an
  asyncpg ``executemany`` INSERT per page, each page one transaction with a checkpoint row update.
* ``conduitd`` / ``conduitd_100k``: ``conduitd --once`` as a subprocess, ``type: postgres``
  source with ``incremental: {column: updated_at, strategy: timestamp}``, PostgreSQL destination
  (append), ``batch.max_rows`` 50,000 / 100,000. Timed from process start to exit. conduitd runs
  with its bytecode cached (in the run's temporary directory, filled by one untimed run first), as
  an installed package has it: with PYTHONDONTWRITEBYTECODE set every start would compile its
  modules again (``--compile-each-start`` measures that).

With ``--log``, log-based change capture (``type: postgres, mode: log``: a logical replication
slot read with ``pgoutput``) joins them. It needs ``wal_level=logical`` on the source server: when
the DSN's server has another level, the benchmark starts a throwaway cluster of its own (initdb and
pg_ctl, as ``tests/helpers/private_pg.py`` does, ``wal_level=logical``, default settings otherwise)
and it is the source of *every* path of that run, so the ceiling, polling and log paths read the
same server; the destination stays the DSN's. Two log paths, append mode, ``batch.max_rows`` as
``conduitd``'s, the slot and publication made by ``conduitd cdc setup --apply`` before (untimed):

* ``conduitd_log``: the initial snapshot of the N existing rows (one REPEATABLE READ cursor,
  every value as text, cast to the catalog's types), through to the hand-over to the log.
* ``conduitd_log_changes``: the log itself. An empty ``src_log`` is snapshotted (untimed run), then
  the N rows are inserted into it (untimed, transactions of ``--log-txn-rows`` rows, default 10,000)
  and the timed ``conduitd --once`` drains the slot: every row decoded from ``pgoutput``.

With ``--mysql``, the same rows are also created in MariaDB (127.0.0.1:3306, root, no password) and
copied by ``mysql_pipe`` (``mariadb --batch --quick`` piped into ``psql`` COPY text), ``mysql_naive``
(asyncmy ``SELECT ... LIMIT 10000`` + asyncpg ``executemany``) and, when conduitd has a ``mysql``
source, ``conduitd_mysql``.

Every path is verified: row count and an order-independent checksum of every value's text
(``sum`` of a 60-bit prefix of ``md5`` per row) equal to the source's. Per path: rows/s, wall
seconds, CPU seconds per million rows of the client (this process and its children: psql, conduitd)
and of every ``postgres`` process; the ratios conduitd / ceiling and conduitd / naive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks.files_to_postgres import (
    _machine_busy,
    _postgres_cpu,
    event_loop_runner,
    machine_steal,
    wait_until_idle,
    write_result,
)

DEFAULT_DSN = os.environ.get("CONDUITD_TEST_PG_DSN", "postgresql://postgres:postgres@127.0.0.1:5432/conduitd_test")
DEFAULT_OUT = "benchmarks/results/cdc_to_postgres.json"
MYSQL: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
PG_PATHS = ("copy_pipe_asyncpg", "copy_pipe_psql", "naive_poller", "conduitd", "conduitd_100k")
LOG_PATHS = ("conduitd_log", "conduitd_log_changes")
MYSQL_PATHS = ("mysql_pipe", "mysql_naive", "conduitd_mysql")
CEILINGS = ("copy_pipe_asyncpg", "copy_pipe_psql")
NAIVE_PAGE = 10_000

COLUMNS = ("id", "updated_at", "customer", "email", "status", "amount", "quantity", "paid", "note")
TABLE_DDL = """CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    updated_at timestamptz NOT NULL,
    customer text NOT NULL,
    email text NOT NULL,
    status text NOT NULL,
    amount numeric(12,2) NOT NULL,
    quantity integer NOT NULL,
    paid boolean NOT NULL,
    note text
) WITH (autovacuum_enabled = off)"""
# 90% of the rows in id order 37 ms apart; every tenth row "updated" after all of them (distinct
# values: a naive `updated_at > last` poller loses rows that share a timestamp across pages, and
# this benchmark measures speed, not that flaw). ~100 bytes a row; note is NULL for 1 row in 7.
FILL_SQL = """INSERT INTO {table}
SELECT i,
       CASE WHEN i % 10 = 3 THEN timestamptz '2026-01-01 00:00:00+00' + ($1::bigint + 1) * interval '37 ms'
                                 + i * interval '1 microsecond'
            ELSE timestamptz '2026-01-01 00:00:00+00' + i * interval '37 ms' END,
       'customer ' || (i * 7919 % 100000),
       'c' || (i % 100003) || '@example.com',
       (ARRAY['new', 'paid', 'shipped', 'cancelled', 'returned'])[1 + i % 5],
       (i * 7919 % 5000000) / 100.0,
       1 + i % 20,
       i % 3 <> 0,
       CASE WHEN i % 7 = 0 THEN NULL ELSE left(md5(i::text), (10 + i % 23)::int) END
FROM generate_series($2::bigint, $3::bigint) AS i"""
MYSQL_DDL = """CREATE TABLE src (
    id BIGINT PRIMARY KEY,
    updated_at DATETIME(6) NOT NULL,
    customer VARCHAR(64) NOT NULL,
    email VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    quantity INT NOT NULL,
    paid BOOLEAN NOT NULL,
    note VARCHAR(64) NULL,
    KEY updated_at (updated_at)
) ENGINE=InnoDB"""
MYSQL_FILL_SQL = """INSERT INTO src
SELECT seq,
       CASE WHEN seq % 10 = 3 THEN TIMESTAMP'2026-01-01 00:00:00' + INTERVAL ({rows} + 1) * 37000 MICROSECOND
                                   + INTERVAL seq MICROSECOND
            ELSE TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq * 37000 MICROSECOND END,
       CONCAT('customer ', seq * 7919 % 100000),
       CONCAT('c', seq % 100003, '@example.com'),
       ELT(1 + seq % 5, 'new', 'paid', 'shipped', 'cancelled', 'returned'),
       (seq * 7919 % 5000000) / 100.0,
       1 + seq % 20,
       seq % 3 <> 0,
       CASE WHEN seq % 7 = 0 THEN NULL ELSE LEFT(MD5(seq), 10 + (seq % 23)) END
FROM seq_{first}_to_{last}"""
CHECKSUM_SQL = """SELECT count(*) AS n, min(id) AS min_id, max(id) AS max_id, sum(amount) AS amount,
       sum(('x' || left(md5(concat_ws('|', id, updated_at, customer, email, status, amount, quantity, paid,
                                       coalesce(note, '<null>'))), 15))::bit(60)::bigint::numeric) AS checksum
FROM {table}"""


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Cpu:
    """CPU seconds so far: the machine (busy), this process and its reaped children, `postgres`,
    and the machine's steal (time the hypervisor ran other guests)."""

    machine: float
    client: float
    postgres: float
    steal: float = 0.0

    @staticmethod
    def take() -> Cpu:
        t = os.times()
        return Cpu(_machine_busy(), t.user + t.system + t.children_user + t.children_system, _postgres_cpu(),
                   machine_steal())


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


def cpu_since(before: Cpu, after: Cpu, rows: int) -> dict[str, float]:
    client, postgres = after.client - before.client, after.postgres - before.postgres
    steal = after.steal - before.steal
    other = max(0.0, after.machine - before.machine - client - postgres - steal)
    per_m = 1e6 / rows if rows else 0.0
    return {"client_s": round(client, 2), "postgres_s": round(postgres, 2), "other_s": round(other, 2),
            "steal_s": round(steal, 2),
            "client_s_per_m": round(client * per_m, 2), "postgres_s_per_m": round(postgres * per_m, 2)}


def with_db(dsn: str, database: str) -> str:
    base, _, rest = dsn.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC", "application_name": "conduitd bench"})


# ---------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: int = args.rows
        tag = f"{os.getpid()}"
        self.source_db = f"bench_cdc_src_{tag}"
        self.source_server = args.dsn
        """The source's server (its admin database): the DSN's, or a private cluster for `--log`."""
        self.private: Any = None
        self.source_dsn = with_db(args.dsn, self.source_db)
        self.dsn = args.dsn
        self.schema = f"bench_cdc_{tag}"
        self.mysql_db = f"bench_cdc_{tag}"
        self.tmp = Path(tempfile.mkdtemp(prefix="conduitd-bench-cdc-"))
        self.expected: dict[str, Any] = {}

    def q(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    @staticmethod
    def table(path: str) -> str:
        """A path's destination table (conduitd reserves names that start with `conduitd_`)."""
        return f"to_{path}"

    async def admin(self, sql: str, *args: Any, dsn: str | None = None) -> list[asyncpg.Record]:
        conn = await connect(dsn or self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # -- setup (not timed) -------------------------------------------------------------------

    async def logical_source(self) -> str:
        """Make the source server one with wal_level=logical: the DSN's if it is, else a private
        cluster started here (removed by `drop`). Says which."""
        level = (await self.admin("SHOW wal_level"))[0][0]
        if level == "logical":
            return "the DSN's server (wal_level=logical)"
        from tests.helpers.private_pg import create_private_postgres

        self.private = await asyncio.to_thread(create_private_postgres, "wal_level=logical", "max_replication_slots=10")
        self.source_server = self.private.dsn
        self.source_dsn = with_db(self.private.dsn, self.source_db)
        return f"a private cluster on port {self.private.port} (the DSN's server has wal_level={level})"

    async def create_source(self) -> None:
        await self.admin(f'CREATE DATABASE "{self.source_db}"', dsn=self.source_server)
        conn = await connect(self.source_dsn)
        try:
            await conn.execute(TABLE_DDL.format(table="src"))
            step = 200_000
            for first in range(1, self.rows + 1, step):
                await conn.execute(FILL_SQL.format(table="src"), self.rows, first, min(self.rows, first + step - 1))
            await conn.execute("CREATE INDEX src_updated_at ON src (updated_at)")
            await conn.execute(TABLE_DDL.format(table="empty"))  # conduitd's fixed cost: a run that reads nothing
            await conn.execute("VACUUM ANALYZE src")
            expected = await conn.fetchrow(CHECKSUM_SQL.format(table="src"))
            assert expected is not None
            self.expected = dict(expected)
            self.expected["bytes_per_row"] = await conn.fetchval("SELECT avg(pg_column_size(src.*)) FROM src")
        finally:
            await conn.close()

    async def create_destinations(self, paths: Sequence[str]) -> None:
        conn = await connect(self.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
            await conn.execute(f"CREATE TABLE {self.q('bench_checkpoints')} (path text PRIMARY KEY, position text)")
            for path in paths:
                await conn.execute(TABLE_DDL.format(table=self.q(self.table(path))))
        finally:
            await conn.close()

    async def drop(self) -> None:
        await self.admin(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        if self.private is not None:
            await asyncio.to_thread(self.private.remove)
            return
        for path in LOG_PATHS:  # a slot left behind would hold the server's WAL for ever
            await self.admin("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = $1", f"conduitd_{path}", dsn=self.source_dsn)
        await self.admin(f'DROP DATABASE IF EXISTS "{self.source_db}" WITH (FORCE)', dsn=self.source_server)

    async def settle(self) -> None:
        for dsn in {self.dsn, self.source_dsn}:
            conn = await connect(dsn)
            try:
                await conn.execute("CHECKPOINT")
            except asyncpg.InsufficientPrivilegeError:
                pass
            finally:
                await conn.close()

    # -- the PostgreSQL paths (timed) --------------------------------------------------------

    async def copy_pipe_asyncpg(self, path: str) -> int:
        reader, writer = await connect(self.source_dsn), await connect(self.dsn)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

        async def produce(data: bytes) -> None:
            await queue.put(data)

        async def chunks() -> AsyncIterator[bytes]:
            while (data := await queue.get()) is not None:
                yield data

        async def read() -> None:
            try:
                await reader.copy_from_query(f"SELECT {', '.join(COLUMNS)} FROM src", output=produce, format="binary")
            finally:
                await queue.put(None)

        try:
            _, status = await asyncio.gather(read(), writer.copy_to_table(
                self.table(path), schema_name=self.schema, columns=COLUMNS, source=chunks(), format="binary"))
        finally:
            await reader.close()
            await writer.close()
        return int(status.split()[-1])

    async def copy_pipe_psql(self, path: str) -> int:
        select = f"COPY (SELECT {', '.join(COLUMNS)} FROM src) TO STDOUT (FORMAT binary)"
        insert = f"COPY {self.q(self.table(path))} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT binary)"
        return await self._pipe(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.source_dsn, "-c", select],
                                insert)

    async def _pipe(self, producer: list[str], insert: str) -> int:
        """`producer`'s standard output into `psql -c insert`; the rows COPY reports."""
        read_end, write_end = os.pipe()
        first = await asyncio.create_subprocess_exec(*producer, stdout=write_end)
        os.close(write_end)
        second = await asyncio.create_subprocess_exec(
            "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-c", insert,
            stdin=read_end, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PGTZ": "UTC"})
        os.close(read_end)
        out, _ = await second.communicate()
        code = await first.wait()
        if code or second.returncode:
            raise RuntimeError(f"pipe failed: {shlex.join(producer[:1])} exit {code}, psql exit {second.returncode}")
        return int(out.decode().split()[-1])

    async def naive_poller(self, path: str) -> int:
        source, dest = await connect(self.source_dsn), await connect(self.dsn)
        select = await source.prepare(f"SELECT {', '.join(COLUMNS)} FROM src WHERE updated_at > $1 "
                                      f"ORDER BY updated_at LIMIT {NAIVE_PAGE}")
        insert = (f"INSERT INTO {self.q(self.table(path))} ({', '.join(COLUMNS)}) "
                  f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")
        checkpoint = f"INSERT INTO {self.q('bench_checkpoints')} VALUES ($1, $2) " \
                     "ON CONFLICT (path) DO UPDATE SET position = excluded.position"
        try:
            last = await source.fetchval("SELECT '-infinity'::timestamptz")
            total = 0
            while rows := await select.fetch(last):
                async with dest.transaction():
                    await dest.executemany(insert, rows)
                    last = rows[-1]["updated_at"]
                    await dest.execute(checkpoint, path, last.isoformat())
                total += len(rows)
        finally:
            await source.close()
            await dest.close()
        return total

    def conduitd_config(self, path: str, source: str, max_rows: int, source_table: str = "src") -> Path:
        config = self.tmp / f"{path}.yaml"
        incremental = "" if "mode: log" in source else "incremental: {column: updated_at, strategy: timestamp}"
        config.write_text(textwrap.dedent(f"""\
            sources:
              - {source}
            destinations:
              - {{name: pg, type: postgres, dsn: "{self.dsn}", schema: {self.schema}}}
            resources:
              - name: {path}
                source: src
                destination: pg
                source_table: {source_table}
                table: {self.table(path)}
                mode: append
                {incremental}
                batch: {{max_rows: {max_rows}}}
            """))
        return config

    async def conduitd(self, path: str, source: str, max_rows: int, source_table: str = "src", *,
                       profile: bool = True) -> int:
        await self.conduitd_process(path, source, max_rows, source_table, profile=profile)
        return await self.count(path)

    async def count(self, path: str) -> int:
        rows = await self.admin(f"SELECT count(*) FROM {self.q(self.table(path))}")
        return int(rows[0][0])

    async def conduitd_process(self, path: str, source: str, max_rows: int, source_table: str = "src", *,
                               profile: bool = True) -> None:
        """One `conduitd --once` run, from process start to exit (what a path's time is: the rows
        it wrote are counted afterwards, a scan that sets the new rows' hint bits, 0.1-0.3 s)."""
        config = self.conduitd_config(path, source, max_rows, source_table)
        command = [sys.executable]
        if self.args.profile and profile and source_table != "empty":
            await asyncio.to_thread(Path(self.args.profile).mkdir, parents=True, exist_ok=True)
            command += ["-m", "cProfile", "-o", str(Path(self.args.profile) / f"{path}.pstats")]
        command += ["-m", "conduitd", "--once", "-c", str(config)]
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE, env=self.conduitd_env())
        _, err = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"conduitd exit {process.returncode}: {err.decode()[-2000:]}")

    def conduitd_env(self) -> dict[str, str]:
        """conduitd's environment: its bytecode cached, as an installed package has it. With
        PYTHONDONTWRITEBYTECODE set (as in some shells and CI) and no `__pycache__` in the checkout,
        every start would compile ~90 modules again (0.3-0.45 s of CPU), which no deployment pays;
        the cache lives in this run's temporary directory, nothing is written to the repository."""
        if self.args.compile_each_start:
            return os.environ.copy()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        return env

    async def warm_up(self) -> None:
        """One untimed `conduitd --once` over the empty table: fills the bytecode cache."""
        await self.conduitd("fixed_cost", self.pg_source(), self.args.batch_rows, source_table="empty")

    async def fixed_cost(self) -> float:
        """Seconds of a `conduitd --once` run over an empty table: interpreter start, imports,
        connections, setup, one poll. Every conduitd path pays it; the COPY pipes do not."""
        started = time.perf_counter()
        await self.conduitd_process("fixed_cost", self.pg_source(), self.args.batch_rows, source_table="empty")
        return time.perf_counter() - started

    def pg_source(self) -> str:
        return f'{{name: src, type: postgres, dsn: "{self.source_dsn}"}}'

    def log_source(self) -> str:
        return f'{{name: src, type: postgres, mode: log, dsn: "{self.source_dsn}"}}'

    def log_table(self, path: str) -> str:
        return "src_log" if path == "conduitd_log_changes" else "src"

    async def prepare_log(self, path: str) -> None:
        """Untimed: a new slot and publication for the path (`conduitd cdc setup --apply`); for the
        log phase an empty `src_log` read once (its snapshot), then filled with the rows."""
        slot, table = f"conduitd_{path}", self.log_table(path)
        conn = await connect(self.source_dsn)
        try:
            await conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                               "WHERE slot_name = $1", slot)
            await conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
            if table == "src_log":
                await conn.execute("DROP TABLE IF EXISTS src_log")
                await conn.execute(TABLE_DDL.format(table="src_log"))
        finally:
            await conn.close()
        config = self.conduitd_config(path, self.log_source(), self.args.batch_rows, table)
        setup = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "conduitd", "cdc", "setup", "-c", str(config), "--apply",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.conduitd_env())
        out, _ = await setup.communicate()
        if setup.returncode:
            raise RuntimeError(f"conduitd cdc setup exit {setup.returncode}: {out.decode()[-2000:]}")
        if table != "src_log":
            return
        if await self.conduitd(path, self.log_source(), self.args.batch_rows, table, profile=False):
            raise RuntimeError("the snapshot of the empty src_log wrote rows")
        conn = await connect(self.source_dsn)
        try:
            step = self.args.log_txn_rows
            for first in range(1, self.rows + 1, step):  # each statement its own transaction
                await conn.execute("INSERT INTO src_log SELECT * FROM src WHERE id BETWEEN $1 AND $2", first,
                                   first + step - 1)
        finally:
            await conn.close()

    # -- MariaDB (setup untimed, paths timed) ------------------------------------------------

    async def create_mysql_source(self) -> None:
        import asyncmy

        conn = await asyncmy.connect(**MYSQL, autocommit=True)
        try:
            async with conn.cursor() as cur:
                with warnings.catch_warnings():  # the note that it did not exist
                    warnings.simplefilter("ignore")
                    await cur.execute(f"DROP DATABASE IF EXISTS `{self.mysql_db}`")
                await cur.execute(f"CREATE DATABASE `{self.mysql_db}`")
                await cur.execute(f"USE `{self.mysql_db}`")
                await cur.execute("SET time_zone = '+00:00'")
                await cur.execute(MYSQL_DDL)
                step = 200_000
                for first in range(1, self.rows + 1, step):
                    await cur.execute(MYSQL_FILL_SQL.format(rows=self.rows, first=first,
                                                            last=min(self.rows, first + step - 1)))
                await cur.execute("ANALYZE TABLE src")
                await cur.fetchall()
        finally:
            conn.close()

    async def drop_mysql(self) -> None:
        import asyncmy

        conn = await asyncmy.connect(**MYSQL, autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{self.mysql_db}`")
        finally:
            conn.close()

    async def mysql_pipe(self, path: str) -> int:
        # Batch mode writes tab-separated text with \t, \n and \\ escaped as COPY's text format
        # reads them, NULL as the word NULL (no text value here is that word); --quick streams.
        select = ("SELECT id, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f+00'), customer, email, status, amount, "
                  "quantity, paid, note FROM src")
        producer = ["mariadb", "--batch", "--quick", "--skip-column-names", "-h", str(MYSQL["host"]), "-P",
                    str(MYSQL["port"]), "-u", str(MYSQL["user"]), "-D", self.mysql_db, "-e", select]
        insert = f"COPY {self.q(self.table(path))} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT text, NULL 'NULL')"
        return await self._pipe(producer, insert)

    async def mysql_naive(self, path: str) -> int:
        import asyncmy

        source = await asyncmy.connect(**MYSQL, db=self.mysql_db, autocommit=True)
        dest = await connect(self.dsn)
        insert = (f"INSERT INTO {self.q(self.table(path))} ({', '.join(COLUMNS)}) "
                  f"VALUES ({', '.join('$' + str(i) for i in range(1, len(COLUMNS) + 1))})")
        checkpoint = f"INSERT INTO {self.q('bench_checkpoints')} VALUES ($1, $2) " \
                     "ON CONFLICT (path) DO UPDATE SET position = excluded.position"
        select = (f"SELECT {', '.join(COLUMNS)} FROM src WHERE updated_at > %s ORDER BY updated_at "
                  f"LIMIT {NAIVE_PAGE}")
        from datetime import UTC, datetime

        try:
            total, last = 0, datetime(1970, 1, 1)
            async with source.cursor() as cur:
                while True:
                    await cur.execute(select, (last,))
                    rows = await cur.fetchall()
                    if not rows:
                        break
                    last = rows[-1][1]
                    records = [(r[0], r[1].replace(tzinfo=UTC), *r[2:7], bool(r[7]), r[8]) for r in rows]
                    async with dest.transaction():
                        await dest.executemany(insert, records)
                        await dest.execute(checkpoint, path, last.isoformat())
                    total += len(rows)
        finally:
            source.close()
            await dest.close()
        return total

    def mysql_source(self) -> str:
        return (f"{{name: src, type: mysql, host: {MYSQL['host']}, port: {MYSQL['port']}, user: {MYSQL['user']}, "
                f"database: {self.mysql_db}}}")

    # -- running and checking ----------------------------------------------------------------

    async def run(self, path: str) -> Outcome:
        outcome = Outcome(path)
        runs: dict[str, Callable[[], Awaitable[int | None]]] = {
            "copy_pipe_asyncpg": lambda: self.copy_pipe_asyncpg(path),
            "copy_pipe_psql": lambda: self.copy_pipe_psql(path),
            "naive_poller": lambda: self.naive_poller(path),
            "conduitd": lambda: self.conduitd_process(path, self.pg_source(), self.args.batch_rows),
            "conduitd_100k": lambda: self.conduitd_process(path, self.pg_source(), 100_000),
            "mysql_pipe": lambda: self.mysql_pipe(path),
            "mysql_naive": lambda: self.mysql_naive(path),
            "conduitd_mysql": lambda: self.conduitd_process(path, self.mysql_source(), self.args.batch_rows),
            "conduitd_log": lambda: self.conduitd_process(path, self.log_source(), self.args.batch_rows),
            "conduitd_log_changes": lambda: self.conduitd_process(path, self.log_source(), self.args.batch_rows,
                                                                  "src_log"),
        }
        if path in LOG_PATHS:
            try:
                await self.prepare_log(path)
            except Exception as exc:  # noqa: BLE001 - reported as the path's failure
                outcome.checks["error"] = f"preparing: {type(exc).__name__}: {exc}"[:2000]
                return outcome
        await self.settle()
        if self.args.wait_idle:
            await wait_until_idle(self.args.wait_idle)
        before = Cpu.take()
        started = time.perf_counter()
        rows: int | None = 0
        try:
            rows = await runs[path]()
        except Exception as exc:  # noqa: BLE001 - a failed path is reported, the others still run
            outcome.checks["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        outcome.seconds = time.perf_counter() - started
        await asyncio.sleep(0.3)  # let the postmaster reap the path's backends: their CPU joins cutime
        after = Cpu.take()
        outcome.rows = rows if rows is not None else await self.count(path)  # conduitd's: counted untimed
        outcome.cpu = cpu_since(before, after, outcome.rows)
        await self.verify(outcome)
        return outcome

    async def verify(self, outcome: Outcome) -> None:
        got = (await self.admin(CHECKSUM_SQL.format(table=self.q(self.table(outcome.path)))))[0]
        want = self.expected
        outcome.checks.update(
            row_count=got["n"], row_count_ok=got["n"] == want["n"] == self.rows,
            ids_ok=(got["min_id"], got["max_id"]) == (want["min_id"], want["max_id"]),
            sum_amount_ok=got["amount"] == want["amount"], checksum_ok=got["checksum"] == want["checksum"],
            reported_rows_ok=outcome.rows == self.rows)
        if outcome.path.startswith("conduitd"):
            dlq_table = f"{self.table(outcome.path)}_dlq"
            dlq = await self.admin("SELECT to_regclass($1) IS NOT NULL", f'"{self.schema}"."{dlq_table}"')
            if dlq[0][0]:
                n = (await self.admin(f"SELECT count(*) FROM {self.q(dlq_table)}"))[0][0]
                outcome.checks.update(dlq_rows=n, dlq_ok=n == 0)
        outcome.ok = "error" not in outcome.checks and all(v for k, v in outcome.checks.items() if k.endswith("_ok"))


def mysql_source_registered() -> bool:
    registry = Path(__file__).resolve().parent.parent / "conduitd" / "registry.py"
    return "mysql_connector" in registry.read_text() if registry.exists() else False


# ---------------------------------------------------------------------------------------------
# Reporting


def best_of(runs: list[list[Outcome]]) -> dict[str, Outcome]:
    best: dict[str, Outcome] = {}
    for run in runs:
        for o in run:
            if o.ok and (o.path not in best or o.rows_per_s > best[o.path].rows_per_s):
                best[o.path] = o
    return best


def ratios(best: dict[str, Outcome]) -> dict[str, float]:
    rate = {p: o.rows_per_s for p, o in best.items()}
    out: dict[str, float] = {}
    ceiling = max((rate[p] for p in CEILINGS if p in rate), default=0.0)
    for path in ("conduitd", "conduitd_100k"):
        if path in rate:
            if ceiling:
                out[f"{path}/ceiling"] = round(rate[path] / ceiling, 3)
            if rate.get("naive_poller"):
                out[f"{path}/naive_poller"] = round(rate[path] / rate["naive_poller"], 3)
    for path in LOG_PATHS:
        if path in rate:
            if ceiling:
                out[f"{path}/ceiling"] = round(rate[path] / ceiling, 3)
            if rate.get("conduitd"):
                out[f"{path}/conduitd"] = round(rate[path] / rate["conduitd"], 3)
    if rate.get("conduitd_mysql"):
        if rate.get("mysql_pipe"):
            out["conduitd_mysql/mysql_pipe"] = round(rate["conduitd_mysql"] / rate["mysql_pipe"], 3)
        if rate.get("mysql_naive"):
            out["conduitd_mysql/mysql_naive"] = round(rate["conduitd_mysql"] / rate["mysql_naive"], 3)
    return out


TARGETS = {"/ceiling": 0.5, "/mysql_pipe": 0.5, "/naive_poller": 3.0, "/mysql_naive": 3.0}


def print_report(runs: list[list[Outcome]], rel: dict[str, float], rows: int, fixed: float | None) -> None:
    print(f"\n{rows:,} rows; best run per path; CPU seconds per million rows")
    print(f"{'path':<20}{'rows/s':>10}{'wall s':>8}{'client':>8}{'postgres':>9}{'other s':>8}{'steal s':>8}  verified")
    for path in (*PG_PATHS, *LOG_PATHS, *MYSQL_PATHS):
        outcomes = [o for run in runs for o in run if o.path == path]
        if not outcomes:
            continue
        o = max(outcomes, key=lambda x: (x.ok, x.rows_per_s))
        if o.skipped:
            print(f"{path:<20}  skipped: {o.skipped}")
            continue
        c = o.cpu
        verified = "ok" if all(x.ok for x in outcomes) else f"FAILED {o.checks}"
        print(f"{path:<20}{o.rows_per_s:>10,.0f}{o.seconds:>8.2f}{c['client_s_per_m']:>8.2f}"
              f"{c['postgres_s_per_m']:>9.2f}{c['other_s']:>8.2f}{c.get('steal_s', 0.0):>8.2f}  {verified}")
    print()
    for name, value in rel.items():
        target = next((t for suffix, t in TARGETS.items() if name.endswith(suffix)), None)
        mark = "" if target is None else f"  (target {target}: {'met' if value >= target else 'MISSED'})"
        print(f"{name:<30}{value:>6.2f}{mark}")
    if fixed is not None:
        best = best_of(runs)
        ceiling = max((best[p].rows_per_s for p in CEILINGS if p in best), default=0.0)
        for path in ("conduitd", "conduitd_100k", *LOG_PATHS, "conduitd_mysql"):
            if path in best and best[path].seconds > fixed and ceiling:
                rate = rows / (best[path].seconds - fixed)
                print(f"{path} without its fixed cost ({fixed:.2f}s): {rate:,.0f} rows/s, {rate / ceiling:.2f} of the "
                      "ceiling")


# ---------------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, selected: list[str]) -> tuple[list[list[Outcome]], dict[str, Any]]:
    bench = Bench(args)
    info: dict[str, Any] = {}
    runs: list[list[Outcome]] = []
    mysql = any(p in MYSQL_PATHS for p in selected)
    try:
        if any(p in LOG_PATHS for p in selected):
            info["source_server"] = await bench.logical_source()
            print(f"source: {info['source_server']}", flush=True)
        t0 = time.perf_counter()
        await bench.create_source()
        if mysql:
            await bench.create_mysql_source()
        info["setup_s"] = round(time.perf_counter() - t0, 1)
        info["bytes_per_row"] = round(float(bench.expected["bytes_per_row"]), 1)
        info["postgresql"] = (await bench.admin("SHOW server_version", dsn=bench.source_server))[0][0]
        print(f"created {args.rows:,} source rows ({info['bytes_per_row']} bytes a row"
              f"{', also in MariaDB' if mysql else ''}) in {info['setup_s']}s (not timed)", flush=True)
        if any(p.startswith("conduitd") for p in selected):
            await bench.create_destinations(["fixed_cost"])
            await bench.warm_up()
        for repeat in range(args.repeat):
            await bench.create_destinations([*selected, "fixed_cost"])
            if any(p.startswith("conduitd") for p in selected):
                fixed = await bench.fixed_cost()
                info.setdefault("conduitd_fixed_cost_s", []).append(round(fixed, 2))
                print(f"  conduitd over an empty table (start, imports, connect, setup, one poll): {fixed:.2f}s",
                      flush=True)
            order = selected[repeat % len(selected):] + selected[:repeat % len(selected)]
            outcomes: list[Outcome] = []
            for path in order:
                if path == "conduitd_mysql" and not mysql_source_registered():
                    outcomes.append(Outcome(path, skipped="conduitd has no mysql source yet "
                                                          "(conduitd/registry.py names no mysql_connector)"))
                    print(f"  {path:<20} skipped: {outcomes[-1].skipped}", flush=True)
                    continue
                o = await bench.run(path)
                outcomes.append(o)
                print(f"  run {repeat + 1}/{args.repeat} {path:<18}{o.rows_per_s:>10,.0f} rows/s {o.seconds:7.2f}s  "
                      f"cpu s/M: client {o.cpu['client_s_per_m']:5.2f} postgres {o.cpu['postgres_s_per_m']:5.2f}  "
                      f"other {o.cpu['other_s']:5.2f}s  steal {o.cpu['steal_s']:5.2f}s  "
                      f"{'ok' if o.ok else 'FAILED ' + str(o.checks)}", flush=True)
            runs.append(outcomes)
    finally:
        if not args.keep:
            await bench.drop()
            await asyncio.to_thread(shutil.rmtree, bench.tmp, True)  # configs and the bytecode cache
            if mysql:
                await bench.drop_mysql()
    return runs, info


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="a 100,000-row smoke run")
    parser.add_argument("--mysql", action="store_true",
                        help="also copy the rows from MariaDB at 127.0.0.1:3306 (conduitd's path needs its mysql "
                             "source)")
    parser.add_argument("--log", action="store_true",
                        help="also the log-based paths (mode: log); the source moves to a wal_level=logical server")
    parser.add_argument("--log-txn-rows", type=int, default=10_000,
                        help="conduitd_log_changes: rows per source transaction (default 10,000)")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL DSN (default: $CONDUITD_TEST_PG_DSN or local)")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="conduitd's batch.max_rows (default 50,000)")
    parser.add_argument("--paths", default=None,
                        help=f"comma-separated subset of {','.join(PG_PATHS + LOG_PATHS + MYSQL_PATHS)}")
    parser.add_argument("--repeat", type=int, default=1, help="run every path this many times; best is reported")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each path, wait up to this long for the machine to be idle (shared hosts)")
    parser.add_argument("--profile", metavar="DIR", help="run conduitd under cProfile, .pstats files into DIR "
                                                          "(slows it: do not use those rates)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    parser.add_argument("--compile-each-start", action="store_true",
                        help="run conduitd with the caller's environment as is (with PYTHONDONTWRITEBYTECODE, "
                             "every start compiles its modules again) instead of with a bytecode cache")
    parser.add_argument("--keep", action="store_true", help="keep the source database and destination schema")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 100_000
    known = PG_PATHS + LOG_PATHS + MYSQL_PATHS
    wanted = args.paths.split(",") if args.paths else \
        list(PG_PATHS) + (list(LOG_PATHS) if args.log else []) + (list(MYSQL_PATHS) if args.mysql else [])
    unknown = set(wanted) - set(known)
    if unknown:
        parser.error(f"unknown path(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    if args.rows < 1 or args.repeat < 1 or args.batch_rows < 1 or args.log_txn_rows < 1:
        parser.error("--rows, --repeat, --batch-rows and --log-txn-rows must be positive")
    return args, [p for p in known if p in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    args, selected = parse_args(argv)
    runs, info = event_loop_runner()(run_all(args, selected))
    best = best_of(runs)
    rel = ratios(best)
    fixed = min(info["conduitd_fixed_cost_s"]) if info.get("conduitd_fixed_cost_s") else None
    print_report(runs, rel, args.rows, fixed)
    from datetime import UTC, datetime

    write_result(args.out, {
        "benchmark": "cdc_to_postgres", "when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": args.rows,
        "batch_rows": args.batch_rows, "naive_page": NAIVE_PAGE, **info, "cpu_count": os.cpu_count(),
        "rows_per_s_best": {p: round(o.rows_per_s) for p, o in best.items()}, "ratios": rel,
        "runs": [[{"path": o.path, "seconds": round(o.seconds, 3), "rows": o.rows, "rows_per_s": round(o.rows_per_s),
                   "ok": o.ok, "skipped": o.skipped, "cpu": o.cpu, "checks": o.checks} for o in run] for run in runs],
    })
    return 0 if all(o.ok or o.skipped for run in runs for o in run) else 1


if __name__ == "__main__":
    sys.exit(main())
