"""Crash safety of a PostgreSQL table source (issue 10, "How it must be shown", third bullet): a
concurrent writer inserts, updates, soft-deletes and hard-deletes rows (some in transactions held
open for seconds while others commit) while `conduitd run` copies the table in upsert mode and is
SIGKILLed at ten random moments and restarted; at the end the destination equals the source row by
row: every row not soft-deleted with its values, soft-deleted rows gone, hard-deleted rows gone when
the key scan (`deletes.key_scan`) exists.

The destination is a database of its own, not a schema of the source's: the late-commit bound
holds back on every write transaction of the source's database, and the daemon's own batch
transactions would then hold it too. Apart, the bound depends on the writer only, as with a
warehouse on another server."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conduitd.config import DeletesConfig
from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config

SEED = 20261201
KILLS = 10
MAX_SLEEP = 1.0
"""Seconds after the killed process's first commit within which the SIGKILL lands (seeded)."""
SHORT_WORKERS = 2
"""Writers of one statement per transaction (autocommit)."""
LONG_WORKERS = 1
"""Writers of transactions held open for 1-3 s while the others commit."""
WORKERS = SHORT_WORKERS + LONG_WORKERS
INITIAL_ROWS = 1500
KEY_SCAN = "key_scan" in DeletesConfig.model_fields
"""Whether this conduitd detects hard deletes (`deletes.key_scan`); until it does, rows deleted
from the source may stay in the destination and are checked apart."""
VALUES = ("name", "qty", "price", "note", "updated_at", "deleted")
_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett"]


async def admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def databases(pg_dsn: str) -> Iterator[tuple[str, str]]:
    """(source, destination): databases of this module's own. The late-commit bound looks at every
    write transaction of the source's database: no other test's (a parallel run), nor the daemon's
    own commits, may hold it; the writer's are the point."""
    names = [f"conduitd_crash_{role}_{uuid.uuid4().hex[:8]}" for role in ("src", "dst")]
    for name in names:
        asyncio.run(admin(pg_dsn, f'CREATE DATABASE "{name}"'))
    base = pg_dsn.rsplit("/", 1)[0]
    yield base + "/" + names[0], base + "/" + names[1]
    for name in names:
        asyncio.run(admin(pg_dsn, f'DROP DATABASE "{name}" WITH (FORCE)'))


@dataclass
class Side:
    dsn: str
    conn: asyncpg.Connection
    schema: str

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'


@pytest.fixture
async def sides(databases: tuple[str, str]) -> AsyncIterator[tuple[Side, Side]]:
    """The source and the destination, each with a fresh schema of one name."""
    schema = f"s_{uuid.uuid4().hex[:10]}"
    sides = []
    for dsn in databases:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        sides.append(Side(dsn, conn, schema))
    yield sides[0], sides[1]
    for side in sides:
        await side.conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await side.conn.close()


async def create_source(src: Side) -> None:
    await src.conn.execute(f"""CREATE TABLE {src.table('items')} (
        id bigint PRIMARY KEY, name text NOT NULL, qty integer NOT NULL, price numeric(12,2), note text,
        updated_at timestamptz NOT NULL DEFAULT now(), deleted boolean NOT NULL DEFAULT false)""")
    await src.conn.execute(f"CREATE INDEX ON {src.table('items')} (updated_at, id)")


def make_config(path: Path, src: Side, dst: Side, *, deletes: dict[str, Any] | None = None,
                incremental: dict[str, Any] | None = None) -> Path:
    return write_config(path, {
        "service": {"log_format": "json", "drain_timeout": "30s"},
        "sources": [{"name": "db", "type": "postgres", "dsn": src.dsn, "schema": src.schema, "poll_interval": "0.2s"}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": dst.dsn, "schema": dst.schema}],
        "resources": [{"name": "items", "source": "db", "destination": "wh", "source_table": "items",
                       "table": "items", "mode": "upsert", "unique_key": ["id"],
                       "incremental": incremental or {"column": "updated_at"},
                       "deletes": deletes or {"soft_delete_column": "deleted"},
                       "batch": {"max_rows": 250, "max_wait": "0.2s"}}],
    })


async def table_rows(side: Side) -> dict[int, tuple[Any, ...]]:
    """id -> (name, qty, price, note, updated_at, deleted); empty while the table does not exist."""
    try:
        rows = await side.conn.fetch(f"SELECT id, {', '.join(VALUES)} FROM {side.table('items')}")
    except asyncpg.UndefinedTableError:
        return {}
    return {r["id"]: tuple(r[c] for c in VALUES) for r in rows}


async def dead_letters(dst: Side) -> int:
    try:
        return int(await dst.conn.fetchval(f"SELECT count(*) FROM {dst.table('items_dlq')}"))
    except asyncpg.UndefinedTableError:
        return 0


async def eventually(check: Callable[[], Awaitable[bool]], what: str, log: Path, proc: subprocess.Popen[bytes],
                     within: float = 90.0) -> None:
    """Wait until `check` holds while the daemon `proc` runs (a guard against a hang, not a measure:
    conditions, not sleeps)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{tail(log)}"
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not reached in {within:.0f}s: {what}\n{tail(log)}")


async def committed(dst: Side) -> tuple[str, str] | None:
    """The pipeline's committed position `(updated_at, id)` as texts; None before it read a row (a
    position may hold only a lease's stamp)."""
    try:
        text = await dst.conn.fetchval(f"SELECT position::text FROM {dst.table('conduitd_checkpoints')} "
                                       "WHERE pipeline = 'items'")
    except asyncpg.UndefinedTableError:
        return None
    position = json.loads(text) if text is not None else {}
    if "cursor" not in position:
        return None
    return str(position["cursor"]), str(position["key"][0])


async def moved(dst: Side, before: tuple[str, str] | None) -> bool:
    return await committed(dst) != before


async def caught_up(src: Side, dst: Side) -> bool:
    """Whether no source row lies after the committed position `(updated_at, id)`."""
    position = await committed(dst)
    if position is None:
        return False
    after = await src.conn.fetchval(
        f"SELECT count(*) FROM {src.table('items')} WHERE (updated_at, id) > ($1::text::timestamptz, $2::text::bigint)",
        *position)
    return bool(after == 0)


# --------------------------------------------------------------------------------------------
# The writer: seeded workers, each inserting and deleting ids of its own (so its sequence of
# operations follows from its seed alone); the long-transaction worker also updates the others'
# rows (a row it picks may be gone: the update then changes nothing)
# --------------------------------------------------------------------------------------------

ID_SPAN = 10_000_000
"""Worker w's ids start at (w + 1) * ID_SPAN."""


@dataclass
class Worker:
    number: int
    rng: random.Random
    next_id: int
    live: list[int] = field(default_factory=list)
    """Its ids inserted and neither soft- nor hard-deleted, as its open transaction sees them."""


@dataclass
class Effect:
    inserted: list[int] = field(default_factory=list)
    soft: list[int] = field(default_factory=list)
    hard: list[int] = field(default_factory=list)


@dataclass
class Writer:
    """What the committed transactions did; `stop` ends every worker after its transaction."""

    table: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    inserted: set[int] = field(default_factory=set)
    soft: set[int] = field(default_factory=set)
    hard: set[int] = field(default_factory=set)
    ops: dict[str, int] = field(default_factory=dict)
    """Statements that committed, by kind."""
    long_transactions: int = 0
    rolled_back: int = 0

    def operation(self, worker: Worker, effect: Effect) -> tuple[str, str]:
        """(kind, SQL) of the worker's next operation on its own rows (seeded)."""
        rng = worker.rng
        roll = rng.random()
        if roll < 0.35 or len(worker.live) < 20:
            ids = list(range(worker.next_id, worker.next_id + (rng.randrange(5, 40) if rng.random() < 0.2 else 1)))
            worker.next_id += len(ids)
            worker.live.extend(ids)
            effect.inserted.extend(ids)
            return "insert", (f"INSERT INTO {self.table} (id, name, qty, price, note) VALUES "
                              + ", ".join(f"({i}, {row_values(rng)})" for i in ids))  # one statement: one now()
        victim = worker.live[rng.randrange(len(worker.live))]
        if roll < 0.70:
            return "update", update_sql(self.table, victim, rng)
        worker.live.remove(victim)
        if roll < 0.85:
            effect.soft.append(victim)
            return "soft delete", f"UPDATE {self.table} SET deleted = true, updated_at = now() WHERE id = {victim}"
        effect.hard.append(victim)
        return "hard delete", f"DELETE FROM {self.table} WHERE id = {victim}"

    def committed(self, kinds: list[str], effect: Effect) -> None:
        self.inserted.update(effect.inserted)
        self.soft.update(effect.soft)
        self.hard.update(effect.hard)
        for kind in kinds:
            self.ops[kind] = self.ops.get(kind, 0) + 1

    async def short(self, conn: asyncpg.Connection, worker: Worker) -> None:
        """One statement per transaction (autocommit), a few milliseconds apart."""
        while not self.stop.is_set():
            effect = Effect()
            kind, sql = self.operation(worker, effect)
            await conn.execute(sql)
            self.committed([kind], effect)
            await asyncio.sleep(worker.rng.uniform(0.002, 0.02))

    async def long(self, conn: asyncpg.Connection, worker: Worker, others: list[Worker]) -> None:
        """Transactions open for 1-3 s (a few statements spread over that time, some on the other
        workers' rows) while the short ones commit; some roll back."""
        rng = worker.rng
        attempts = 0
        while not self.stop.is_set():
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            hold, statements = rng.uniform(1.0, 3.0), rng.randrange(2, 7)
            attempts += 1
            rollback = attempts % 4 == 2  # every fourth, from the second: some always roll back
            before, effect, kinds = list(worker.live), Effect(), []
            kind, sql = self.operation(worker, effect)
            # BEGIN and the first write in one message: the transaction holds an xid from its start
            # on (the late-commit bound sees only transactions with one: a known, documented gap).
            await conn.execute(f"BEGIN; {sql}")
            kinds.append(kind)
            started = time.monotonic()
            for _ in range(statements - 1):
                await asyncio.sleep(hold / statements)
                if rng.random() < 0.3:
                    other = others[rng.randrange(len(others))]
                    victim = (other.number + 1) * ID_SPAN + rng.randrange(2 * INITIAL_ROWS // WORKERS)
                    kind, sql = "update", update_sql(self.table, victim, rng)
                else:
                    kind, sql = self.operation(worker, effect)
                await conn.execute(sql)
                kinds.append(kind)
            await asyncio.sleep(max(0.0, hold - (time.monotonic() - started)))
            if rollback:
                await conn.execute("ROLLBACK")
                worker.live = before
                self.rolled_back += 1
            else:
                await conn.execute("COMMIT")
                self.committed(kinds, effect)
                self.long_transactions += 1


def row_values(rng: random.Random) -> str:
    """SQL literals (name, qty, price, note): plain words and numbers, nothing to escape."""
    note = "NULL" if rng.random() < 0.2 else f"'{rng.choice(_WORDS)} {rng.randrange(10**6)}'"
    return (f"'{rng.choice(_WORDS)}-{rng.randrange(10**9)}', {rng.randrange(-1000, 10**6)}, "
            f"{rng.randrange(10**8) / 100:.2f}, {note}")


def update_sql(table: str, victim: int, rng: random.Random) -> str:
    name, qty, price, note = row_values(rng).split(", ", 3)
    return (f"UPDATE {table} SET name = {name}, qty = {qty}, price = {price}, note = {note}, updated_at = now() "
            f"WHERE id = {victim}")


async def start_writer(src: Side,
                       rng: random.Random) -> tuple[Writer, list[asyncpg.Connection], list[asyncio.Task[None]]]:
    """The initial rows (one statement per worker: groups of one timestamp), then the workers."""
    writer = Writer(src.table("items"))
    workers = [Worker(w, random.Random(rng.randrange(2**32)), (w + 1) * ID_SPAN)
               for w in range(WORKERS)]
    for worker in workers:
        ids = list(range(worker.next_id, worker.next_id + INITIAL_ROWS // len(workers)))
        await src.conn.execute(f"INSERT INTO {writer.table} (id, name, qty, price, note) VALUES "
                               + ", ".join(f"({i}, {row_values(worker.rng)})" for i in ids))
        worker.next_id += len(ids)
        worker.live.extend(ids)
        writer.inserted.update(ids)
    conns = [await asyncpg.connect(src.dsn) for _ in workers]
    short, long = workers[:SHORT_WORKERS], workers[SHORT_WORKERS:]
    tasks = [asyncio.create_task(writer.short(conns[w.number], w), name=f"writer {w.number}") for w in short]
    tasks += [asyncio.create_task(writer.long(conns[w.number], w, short), name=f"writer {w.number}") for w in long]
    return writer, conns, tasks


async def stop_writer(writer: Writer, conns: list[asyncpg.Connection], tasks: list[asyncio.Task[None]]) -> None:
    """Every worker ends its transaction as planned; a worker's error is the test's."""
    writer.stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            await conn.close()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


async def test_a_soft_deleted_row_deletes_its_key_and_is_not_written(sides: tuple[Side, Side], tmp_path: Path) -> None:
    src, dst = sides
    await create_source(src)
    await src.conn.execute(f"INSERT INTO {src.table('items')} (id, name, qty) VALUES (1, 'a', 1), (2, 'b', 2), "
                           f"(3, 'c', 3)")
    config = make_config(tmp_path / "conduitd.yaml", src, dst)
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert sorted(await table_rows(dst)) == [1, 2, 3]
    await src.conn.execute(f"UPDATE {src.table('items')} SET deleted = true, updated_at = now() WHERE id = 2")
    await src.conn.execute(f"INSERT INTO {src.table('items')} (id, name, qty, deleted) VALUES (4, 'd', 4, true)")
    await src.conn.execute(f"UPDATE {src.table('items')} SET qty = 30, updated_at = now() WHERE id = 3")
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    source, copied = await table_rows(src), await table_rows(dst)
    assert sorted(copied) == [1, 3]  # 2 deleted by its flag, 4 never written
    assert copied[1] == source[1] and copied[3] == source[3] and copied[3][1] == 30


@dataclass
class Kill:
    sleep: float
    """Seconds between the killed process's first commit and the SIGKILL (seeded)."""
    caught_up: bool
    """Whether the destination had read everything committed at the source when it was killed."""


async def crash_loop(src: Side, dst: Side, config: Path, log: Path, rng: random.Random) -> list[Kill]:
    """KILLS times: start the daemon, wait until it has committed a batch, SIGKILL it a seeded
    random moment later."""
    kills = []
    for _ in range(KILLS):
        sleep = rng.uniform(0, MAX_SLEEP)
        before = await committed(dst)
        proc = start_daemon(config, log)
        try:
            await eventually(functools.partial(moved, dst, before), "the restarted daemon commits a batch", log, proc)
            await asyncio.sleep(sleep)  # the kill's moment, not a wait for something
            assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{tail(log)}"
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 30)
        finally:
            stop_daemon(proc)
        assert proc.returncode == -signal.SIGKILL
        kills.append(Kill(sleep, await caught_up(src, dst)))
    return kills


async def finish(src: Side, dst: Side, config: Path, log: Path, hard: set[int]) -> None:
    """Start the daemon once more, wait until it has read everything after its position (and, with
    the key scan, deleted the hard-deleted rows), then SIGTERM it: it drains and exits 0."""
    proc = start_daemon(config, log)
    try:
        await eventually(functools.partial(caught_up, src, dst), "the daemon reads every row after its position",
                         log, proc)
        if KEY_SCAN:
            async def hard_deleted_gone() -> bool:
                return not hard & set(await table_rows(dst))

            await eventually(hard_deleted_gone, f"the key scan (every 2s) deletes the {len(hard)} rows deleted "
                             "from the source", log, proc, within=60)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == 0, f"exit code {code} after SIGTERM:\n{tail(log)}"
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit within 60s of SIGTERM:\n{tail(log)}")
    finally:
        stop_daemon(proc)


@pytest.mark.slow
async def test_sigkill_at_random_moments_while_a_writer_inserts_updates_and_deletes_leaves_the_source_rows(
        sides: tuple[Side, Side], tmp_path: Path) -> None:
    src, dst = sides
    rng = random.Random(SEED)
    await create_source(src)
    deletes: dict[str, Any] = {"soft_delete_column": "deleted"}
    if KEY_SCAN:
        deletes["key_scan"] = "2s"
    config = make_config(tmp_path / "conduitd.yaml", src, dst, deletes=deletes)
    log = tmp_path / "conduitd.log"
    writer, conns, tasks = await start_writer(src, random.Random(rng.randrange(2**32)))
    try:
        kills = await crash_loop(src, dst, config, log, rng)
    finally:
        await stop_writer(writer, conns, tasks)
    source = await table_rows(src)
    # The writer's own account agrees with the table it wrote.
    assert writer.hard == writer.inserted - source.keys()
    assert {i for i, v in source.items() if v[-1]} == writer.soft - writer.hard
    await finish(src, dst, config, log, writer.hard)

    copied = await table_rows(dst)
    history = (f"{writer.ops} statements committed, {writer.long_transactions} long transactions committed, "
               f"{writer.rolled_back} rolled back; kills: "
               + ", ".join(f"{k.sleep:.2f}s{'' if not k.caught_up else ' (caught up)'}" for k in kills))
    assert sum(not k.caught_up for k in kills) >= KILLS // 2, f"too few kills landed mid-work: {history}"
    assert min(writer.ops.get(k, 0) for k in ("insert", "update", "soft delete", "hard delete")) > 0, history
    assert writer.long_transactions > 0 and writer.rolled_back > 0, history
    live = {i: v for i, v in source.items() if not v[-1]}
    missing = sorted(live.keys() - copied.keys())
    wrong = [(i, copied[i], v) for i, v in sorted(live.items()) if i in copied and copied[i] != v]
    soft_left = sorted({i for i, v in source.items() if v[-1]} & copied.keys())
    unknown = sorted(copied.keys() - source.keys() - writer.hard)
    assert not missing, f"{len(missing)} source rows missing, e.g. {missing[:5]}; {history}"
    assert not wrong, f"{len(wrong)} rows differ (id, copied, source), e.g. {wrong[:3]}; {history}"
    assert not soft_left, f"{len(soft_left)} soft-deleted rows left, e.g. {soft_left[:5]}; {history}"
    assert not unknown, f"{len(unknown)} rows the source never had, e.g. {unknown[:5]}; {history}"
    hard_left = sorted(writer.hard & copied.keys())
    if KEY_SCAN:
        assert not hard_left, f"{len(hard_left)} hard-deleted rows left, e.g. {hard_left[:5]}; {history}"
    assert await dead_letters(dst) == 0
    print(f"{len(live)} live rows copied; {len(soft_left)} soft-deleted left; {len(hard_left)} of "
          f"{len(writer.hard)} hard-deleted rows still in the destination (key scan: {KEY_SCAN}); {history}")
