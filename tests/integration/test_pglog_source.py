"""Log-based change capture from PostgreSQL (`type: postgres, mode: log`) against a throwaway
cluster with `wal_level=logical`, through the real `conduitd` command into SQLite: the initial
snapshot hands over to the log with no gap and no duplicate, and inserts, updates, deletes and an
ALTER TABLE under load survive a SIGKILL of the daemon: the destination equals the source row by
row, and the slot stands where the destination's checkpoint does."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conduitd.config import Config
from conduitd.configfile import load_config
from conduitd.core.records import Chunk
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.pglog import LogSource
from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config
from tests.helpers.kafka import free_port
from tests.helpers.private_pg import PrivatePostgres, create_private_postgres

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def logical_pg() -> Iterator[PrivatePostgres]:
    server = create_private_postgres("wal_level=logical", "max_replication_slots=20")  # a slot per test
    try:
        yield server
    finally:
        server.remove()


def make_config(tmp_path: Path, dsn: str, table: str, mode: str, health_port: int = 0, **pipeline: Any) -> Path:
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"health_port": health_port, "log_format": "json"},
        "sources": [{"name": "src", "type": "postgres", "mode": "log", "dsn": dsn, "poll_interval": "0.1s"}],
        "destinations": [{"name": "out", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": table, "source": "src", "destination": "out", "source_table": f"public.{table}",
                       "table": table, "mode": mode, **pipeline}],
    })


def destination(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    path = tmp_path / "out.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def checkpoint(tmp_path: Path, pipeline: str) -> dict[str, Any] | None:
    rows = destination(tmp_path, f"SELECT position FROM conduitd_checkpoints WHERE pipeline = '{pipeline}'")
    return json.loads(rows[0][0]) if rows else None


def run_once(config: Path) -> None:
    done = conduitd("run", "-c", str(config), "--once", timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def setup(config: Path) -> None:
    done = conduitd("cdc", "setup", "-c", str(config), "--apply", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pg_create_logical_replication_slot" in done.stdout


def set_up(tmp_path: Path, dsn: str, table: str) -> Config:
    """An upsert pipeline (key `id`) on `table`, its publication and slot created: its config."""
    config = make_config(tmp_path, dsn, table, "upsert", unique_key=["id"])
    setup(config)
    return load_config(config)


async def slot_position(conn: asyncpg.Connection, slot: str) -> str:
    return str(await conn.fetchval("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                   "WHERE slot_name = $1", slot))


async def test_the_snapshot_hands_over_to_the_log_without_gap_or_duplicate(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """Append mode, so a row read twice would show twice. Rows committed after the slot and before
    the snapshot are in both the log and the snapshot (the filter must skip them in the log); a
    transaction running while the snapshot is read commits after it (only the log has it)."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE handover (id int PRIMARY KEY, label text)")
        await conn.execute("INSERT INTO handover SELECT g, 'before ' || g FROM generate_series(1, 300) g")
        config = make_config(tmp_path, logical_pg.dsn, "handover", "append", batch={"max_rows": 70})
        unprepared = conduitd("validate", "-c", str(config), timeout=60)
        assert unprepared.returncode == 2 and "no publication conduitd_handover" in unprepared.stdout
        setup(config)
        prepared = conduitd("validate", "-c", str(config), timeout=60)
        assert prepared.returncode == 0 and "conduitd_handover at " in prepared.stdout, prepared.stdout
        await conn.execute("INSERT INTO handover SELECT g, 'in both ' || g FROM generate_series(301, 500) g")
        await conn.execute("UPDATE handover SET label = 'changed' WHERE id = 7")  # one more version of id 7
        running = await asyncpg.connect(logical_pg.dsn)
        open_tx = running.transaction()
        await open_tx.start()
        await running.execute("INSERT INTO handover VALUES (-1, 'running during the snapshot')")
        run_once(config)
        await open_tx.commit()
        await running.close()
        await conn.execute("INSERT INTO handover SELECT g, 'after ' || g FROM generate_series(501, 600) g")
        run_once(config)
        ids = [r[0] for r in destination(tmp_path, "SELECT id FROM handover")]
        expected = [*range(-1, 0), *range(1, 601)]
        assert len(ids) == len(set(ids)), "a row was written twice"
        assert sorted(ids) == expected
        assert destination(tmp_path, "SELECT label FROM handover WHERE id = 7") == [("changed",)]
        position = checkpoint(tmp_path, "handover")
        assert position is not None and position["phase"] == "log" and position["filter"] is None
        assert await slot_position(conn, "conduitd_handover") == position["lsn"]
    finally:
        await conn.close()


async def _write_load(dsn: str, seed: int, stop_after: int, altered: asyncio.Event, table: str = "load",
                      next_id: int = 1001) -> None:
    """Random inserts, updates and deletes, an ALTER TABLE half-way, until `stop_after` transactions."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    try:
        for step in range(stop_after):
            if step == stop_after // 2:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN note text")
                altered.set()
            async with conn.transaction():
                for _ in range(rng.randint(1, 8)):
                    action = rng.random()
                    if action < 0.4:
                        await conn.execute(f"INSERT INTO {table} (id, name, amount) VALUES ($1, $2, $3)", next_id,
                                           f"n{next_id}", Decimal(rng.randint(0, 99999)) / 100)
                        next_id += 1
                    elif action < 0.8:
                        target = rng.randint(1, next_id)
                        if altered.is_set():
                            await conn.execute(f"UPDATE {table} SET amount = amount + 1, note = $2 WHERE id = $1",
                                               target, f"s{step}")
                        else:
                            await conn.execute(f"UPDATE {table} SET amount = amount + 1 WHERE id = $1", target)
                    else:
                        await conn.execute(f"DELETE FROM {table} WHERE id = $1", rng.randint(1, next_id))
            await asyncio.sleep(0.002)
    finally:
        await conn.close()


def _normal(rows: list[tuple[Any, ...]]) -> list[tuple[int, str | None, str | None, str | None]]:
    return sorted((int(r[0]), r[1], None if r[2] is None else f"{Decimal(str(r[2])):.2f}", r[3]) for r in rows)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _lag_shown(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, float]:
    """The slot's lag as /status shows it, once /metrics has it too."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, tail(log)
        try:
            metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            status = json.loads(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/status"))["pipelines"][0]
            if 'conduitd_source_lag{partition="public.load",pipeline="load",unit="bytes"}' in metrics \
                    and "public.load" in status["lag"]:
                return dict(status["lag"]["public.load"])
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.1)


async def test_changes_and_an_alter_table_survive_a_sigkill(tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE load (id int PRIMARY KEY, name text, amount numeric(10,2))")
        await conn.execute("INSERT INTO load SELECT g, 'n' || g, g / 10.0 FROM generate_series(1, 1000) g")
        port = free_port()
        config = make_config(tmp_path, logical_pg.dsn, "load", "upsert", health_port=port, unique_key=["id"],
                             batch={"max_rows": 200, "max_wait": "0.1s"})
        setup(config)
        log = tmp_path / "daemon.log"
        altered = asyncio.Event()
        writer = asyncio.create_task(_write_load(logical_pg.dsn, 15, 400, altered))
        proc = start_daemon(config, log)
        try:
            deadline = time.monotonic() + 60
            while (checkpoint(tmp_path, "load") or {}).get("phase") != "log":  # past the snapshot
                assert proc.poll() is None and time.monotonic() < deadline, tail(log)
                await asyncio.sleep(0.05)
            await asyncio.wait_for(altered.wait(), 60)
            first = checkpoint(tmp_path, "load")
            while checkpoint(tmp_path, "load") == first:  # a commit after the ALTER started
                assert proc.poll() is None and time.monotonic() < deadline, tail(log)
                await asyncio.sleep(0.02)
            proc.kill()
            proc.wait(timeout=30)
            proc = start_daemon(config, log)
            await asyncio.wait_for(writer, 120)
            lag = await _lag_shown(port, proc, log)
            assert set(lag) >= {"bytes", "seconds"}
        finally:
            stop_daemon(proc)
            if not writer.done():
                writer.cancel()
        run_once(config)
        source = _normal(list(await conn.fetch("SELECT id, name, amount::text, note FROM load")))
        copied = _normal(destination(tmp_path, "SELECT id, name, amount, note FROM load"))
        assert len(copied) == len(source)
        assert copied == source, next((a, b) for a, b in zip(copied, source, strict=False) if a != b)
        assert any(r[3] is not None for r in source)  # the new column arrived
        position = checkpoint(tmp_path, "load")
        assert position is not None and position["lsn"] is not None
        assert await slot_position(conn, "conduitd_load") == position["lsn"]  # advanced after the commit
    finally:
        await conn.close()


async def test_a_transaction_larger_than_a_chunk_is_split_and_resumed_inside(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """Chunks hold at most max_rows: a 25-row transaction comes as 10 + 10 + 5, the middle
    position says how much of it was handed over, and a source resumed there reads only the rest.
    The slot moves only on acknowledge, and lag() shows the WAL it holds back."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE split (id int PRIMARY KEY, v text)")
        config = set_up(tmp_path, logical_pg.dsn, "split")
        source_config, pipeline = config.source("src"), config.resources[0]

        async def read(position: dict[str, Any] | None) -> list[Chunk]:
            return await _read_once(config, "public.split", position, max_rows=10)

        (snapshot,) = await read(None)  # the table is empty: one empty chunk that hands over to the log
        assert snapshot.rows.num_rows == 0 and snapshot.end["phase"] == "log" and snapshot.end["lsn"] is None
        await conn.execute("INSERT INTO split SELECT g, 'v' || g FROM generate_series(1, 25) g")
        chunks = await read(snapshot.end)
        assert [c.rows.num_rows for c in chunks] == [10, 10, 5]
        assert all(c.nbytes == c.rows.nbytes > 0 for c in chunks)  # what batch.max_bytes counts
        assert [c.end.get("done") for c in chunks] == [10, 20, None]
        assert chunks[0].end["lsn"] is None and chunks[2].end["lsn"] == chunks[0].end["txn"]
        assert chunks[1].start == chunks[0].end and chunks[2].start == chunks[1].end
        rest = await read(chunks[0].end)
        assert [r for c in rest for r in c.rows.column("id").to_pylist()] == list(range(11, 26))

        before = await slot_position(conn, "conduitd_split")
        source = LogSource(source_config, pipeline, once=False, max_rows=100, deletes=True,  # type: ignore[arg-type]
                           unreachable_after=10)
        reading = source.chunks(FixedCheckpoints({"public.split": snapshot.end}), asyncio.Event())
        try:
            chunk = await anext(reading)
            assert chunk.rows.num_rows == 25
            lag = source.lag()["public.split"]
            assert lag["bytes"] > 0 and lag["seconds"] >= 0
            assert await slot_position(conn, "conduitd_split") == before  # nothing acknowledged yet
            await source.acknowledge({"public.split": chunk.end})
            assert await slot_position(conn, "conduitd_split") == chunk.end["lsn"]
            await source.acknowledge({"public.split": snapshot.end})  # an older position: no step back
            assert await slot_position(conn, "conduitd_split") == chunk.end["lsn"]
        finally:
            await reading.aclose()  # type: ignore[attr-defined]
            await source.close()
    finally:
        await conn.close()


async def _read_once(config: Any, partition: str, position: dict[str, Any] | None, *,
                     max_rows: int) -> list[Chunk]:
    """Every chunk a --once run of the config's first pipeline hands over from `position` (None:
    no checkpoint), read in this process and never acknowledged."""
    source = LogSource(config.source("src"), config.resources[0], once=True,  # type: ignore[arg-type]
                       max_rows=max_rows, deletes=True, unreachable_after=10)
    try:
        committed = {} if position is None else {partition: position}
        return [c async for c in source.chunks(FixedCheckpoints(committed), asyncio.Event())]
    finally:
        await source.close()


def _apply(state: dict[int, str | None], chunks: list[Chunk]) -> None:
    """What an upsert destination does with the chunks: the last change per key wins."""
    for chunk in chunks:
        deletes = chunk.deletes if chunk.deletes is not None else [False] * chunk.rows.num_rows
        for row, delete in zip(chunk.rows.to_pylist(), deletes, strict=True):
            if delete:
                state.pop(row["id"], None)
            else:
                state[row["id"]] = row["v"]


async def test_a_snapshot_resumed_after_a_crash_still_ends_equal_to_the_source(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """The snapshot stops after its first chunk (a crash); rows change on both sides of the key it
    reached; the resumed snapshot (a new one, from the next key) and the log (with the first
    snapshot's filter) together give exactly the source's rows."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE resumed (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO resumed SELECT g, 'v' || g FROM generate_series(1, 25) g")
        config = set_up(tmp_path, logical_pg.dsn, "resumed")

        async def read(position: dict[str, Any] | None, *, first_only: bool = False) -> list[Chunk]:
            source = LogSource(config.source("src"), config.resources[0], once=True,  # type: ignore[arg-type]
                               max_rows=10, deletes=True, unreachable_after=10)
            reading = source.chunks(FixedCheckpoints({} if position is None else {"public.resumed": position}),
                                    asyncio.Event())
            try:
                if first_only:
                    return [await anext(reading)]
                return [c async for c in reading]
            finally:
                await reading.aclose()  # type: ignore[attr-defined]
                await source.close()

        (first,) = await read(None, first_only=True)
        assert first.end["phase"] == "snapshot" and first.end["after"] == ["10"]
        await conn.execute("UPDATE resumed SET v = 'changed' WHERE id IN (5, 15)")
        await conn.execute("DELETE FROM resumed WHERE id IN (3, 20)")
        await conn.execute("INSERT INTO resumed VALUES (30, 'new'), (0, 'new too')")
        rest = await read(first.end)
        assert rest[0].start == first.end and rest[-1].end["phase"] == "log"
        state: dict[int, str | None] = {}
        _apply(state, [first, *rest])
        assert state == {r["id"]: r["v"] for r in await conn.fetch("SELECT id, v FROM resumed")}
    finally:
        await conn.close()


async def test_a_snapshot_whose_connection_is_lost_resumes_where_it_stood(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """The server ends the snapshot's session after the first chunk: the source reconnects and
    goes on from that chunk's end (the chunks still chain), and the rows end equal to the source."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE cut (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO cut SELECT g, 'v' || g FROM generate_series(1, 25) g")
        config = set_up(tmp_path, logical_pg.dsn, "cut")
        source = LogSource(config.source("src"), config.resources[0], once=True,  # type: ignore[arg-type]
                           max_rows=10, deletes=True, unreachable_after=10)
        reading = source.chunks(FixedCheckpoints({}), asyncio.Event())
        try:
            chunks = [await anext(reading)]
            ended = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'conduitd source' AND state = 'idle in transaction'")
            assert ended == 1  # the snapshot's session, held open between chunks
            await conn.execute("UPDATE cut SET v = 'changed' WHERE id IN (5, 15)")
            await conn.execute("DELETE FROM cut WHERE id = 20")
            chunks += [c async for c in reading]
        finally:
            await reading.aclose()  # type: ignore[attr-defined]
            await source.close()
        assert chunks[-1].end["phase"] == "log"
        # --once stopped where the WAL stood at its start: a second run reads the changes since.
        again = LogSource(config.source("src"), config.resources[0], once=True,  # type: ignore[arg-type]
                          max_rows=10, deletes=True, unreachable_after=10)
        try:
            chunks += [c async for c in again.chunks(FixedCheckpoints({"public.cut": chunks[-1].end}), asyncio.Event())]
        finally:
            await again.close()
        assert all(b.start == a.end for a, b in itertools.pairwise(chunks))
        state: dict[int, str | None] = {}
        _apply(state, chunks)
        assert state == {r["id"]: r["v"] for r in await conn.fetch("SELECT id, v FROM cut")}
    finally:
        await conn.close()


async def test_a_run_advances_a_slot_left_behind_the_checkpoint(tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """A run that committed and stopped before it advanced the slot (SIGTERM or a crash between the
    commit and `acknowledge`) leaves the slot behind the destination's checkpoint. The next run
    advances it as it starts, although it has nothing to commit (so no acknowledge of its own)."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE behind (id int PRIMARY KEY, v text)")
        config = set_up(tmp_path, logical_pg.dsn, "behind")
        start = await slot_position(conn, "conduitd_behind")

        async def run(position: dict[str, Any] | None) -> list[Chunk]:
            return await _read_once(config, "public.behind", position, max_rows=100)

        snapshot = await run(None)  # an empty table: the snapshot hands over to the log at once
        await conn.execute("INSERT INTO behind SELECT g, 'v' || g FROM generate_series(1, 5) g")
        logged = await run(snapshot[-1].end)  # read, never acknowledged: as if stopped after the commit
        end = logged[-1].end
        assert end["phase"] == "log" and end["lsn"] and logged[-1].rows.num_rows == 5
        assert await slot_position(conn, "conduitd_behind") == start
        assert await run(end) == []  # everything up to the checkpoint is written: nothing to read
        assert await slot_position(conn, "conduitd_behind") == end["lsn"]
    finally:
        await conn.close()


async def test_setup_refused_by_the_server_says_which_statement_and_why(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """An account without the REPLICATION attribute owns the table: the publication is created,
    the slot is refused. `cdc setup --apply` names the statement and the server's reason and
    exits 1 (no traceback, no "bug in conduitd"); run again by an account that may, it creates
    only the slot."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE ROLE no_replication LOGIN")
        await conn.execute("GRANT CREATE ON DATABASE postgres TO no_replication")  # for the publication
        await conn.execute("CREATE TABLE refused (id int PRIMARY KEY, v text)")
        await conn.execute("ALTER TABLE refused OWNER TO no_replication")
        limited = logical_pg.dsn.replace("postgres@", "no_replication@", 1)
        assert limited != logical_pg.dsn
        config = make_config(tmp_path, limited, "refused", "append")
        done = conduitd("cdc", "setup", "-c", str(config), "--apply", timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "bug in conduitd" not in done.stderr, done.stderr
        assert "refused `SELECT pg_create_logical_replication_slot('conduitd_refused', 'pgoutput')`" in done.stderr
        assert "replication" in done.stderr.split("refused", 1)[1].lower()
        assert "1 statement(s) before it were applied" in done.stderr, done.stderr
        assert await conn.fetchval("SELECT count(*) FROM pg_publication WHERE pubname = 'conduitd_refused'") == 1
        assert await conn.fetchval("SELECT count(*) FROM pg_replication_slots "
                                   "WHERE slot_name = 'conduitd_refused'") == 0
        again = conduitd("cdc", "setup", "-c", str(make_config(tmp_path, logical_pg.dsn, "refused", "append")),
                         "--apply", timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "CREATE PUBLICATION" not in again.stdout and "pg_create_logical_replication_slot" in again.stdout
    finally:
        await conn.execute("SELECT pg_drop_replication_slot('conduitd_refused') FROM pg_replication_slots "
                           "WHERE slot_name = 'conduitd_refused'")
        await conn.close()


async def test_an_idle_slot_moves_past_other_tables_writes(tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """Writes to tables outside the publication send nothing to the slot; a daemon-mode source
    that finds nothing to read still advances the slot, or its WAL would pile up."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int PRIMARY KEY)")
        config = set_up(tmp_path, logical_pg.dsn, "quiet")
        source = LogSource(config.source("src"), config.resources[0], once=False,  # type: ignore[arg-type]
                           max_rows=10, deletes=True, unreachable_after=10)
        start = {"phase": "log", "lsn": None, "filter": None}
        await conn.execute("INSERT INTO busy SELECT generate_series(1, 1000)")
        written = await conn.fetchval("SELECT pg_current_wal_lsn()")
        stop = asyncio.Event()

        async def advanced() -> None:
            deadline = time.monotonic() + 20
            try:
                while await conn.fetchval("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                                          "WHERE slot_name = 'conduitd_quiet'") < written:
                    assert time.monotonic() < deadline, "the slot did not move"
                    await asyncio.sleep(0.05)
            finally:
                stop.set()  # the source returns at its next wait

        watcher = asyncio.create_task(advanced())
        try:
            assert [c async for c in source.chunks(FixedCheckpoints({"public.quiet": start}), stop)] == []
            await watcher
        finally:
            watcher.cancel()
            await source.close()
    finally:
        await conn.close()


def two_pipelines_config(tmp_path: Path, dsn: str, table: str, op_column: str) -> Path:
    """One source table read by an append pipeline (`<table>_hist`) and an upsert one (`<table>_state`)."""
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"log_format": "json"},
        "sources": [{"name": "src", "type": "postgres", "mode": "log", "dsn": dsn, "op_column": op_column}],
        "destinations": [{"name": "out", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [
            {"name": f"{table}_hist", "source": "src", "destination": "out", "source_table": f"public.{table}",
             "mode": "append", "table": f"{table}_hist"},
            {"name": f"{table}_state", "source": "src", "destination": "out", "source_table": f"public.{table}",
             "mode": "upsert", "unique_key": ["id"], "table": f"{table}_state"}],
    })


async def test_op_column_gives_the_history_in_append_and_the_state_in_upsert(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """`op_column: _op`: append mode keeps every change in commit order (snapshot rows, inserts,
    updates, a key change as a delete of the old key then the new row, deletes with their key);
    upsert mode ends with the source's rows, each saying what last wrote it. A table column of
    that name, or the setting on a polling source, is refused with a clear message."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE ops (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO ops VALUES (1, 'a'), (2, 'b')")
        config = two_pipelines_config(tmp_path, logical_pg.dsn, "ops", "_op")
        setup(config)
        run_once(config)
        await conn.execute("INSERT INTO ops VALUES (3, 'c')")
        async with conn.transaction():
            await conn.execute("UPDATE ops SET v = 'a2' WHERE id = 1")
            await conn.execute("UPDATE ops SET id = 20 WHERE id = 2")
        await conn.execute("DELETE FROM ops WHERE id = 3")
        run_once(config)
        assert destination(tmp_path, "SELECT id, v, _op FROM ops_hist ORDER BY rowid") == [
            (1, "a", "snapshot"), (2, "b", "snapshot"), (3, "c", "insert"), (1, "a2", "update"),
            (2, None, "delete"), (20, "b", "update"), (3, None, "delete")]
        assert destination(tmp_path, "SELECT id, v, _op FROM ops_state ORDER BY id") == [
            (1, "a2", "update"), (20, "b", "update")]

        clash = two_pipelines_config(tmp_path, logical_pg.dsn, "ops", "v")
        done = conduitd("run", "-c", str(clash), "--once", timeout=120)
        assert done.returncode == 2 and "op_column 'v' is a column of public.ops too" in done.stdout + done.stderr, \
            done.stdout[-2000:] + done.stderr[-2000:]
        polling = write_config(tmp_path / "poll.yaml", {
            "sources": [{"name": "src", "type": "postgres", "dsn": logical_pg.dsn, "op_column": "_op"}],
            "destinations": [{"name": "out", "type": "sqlite", "path": str(tmp_path / "out.db")}],
            "resources": [{"name": "p", "source": "src", "destination": "out", "source_table": "public.ops"}]})
        refused = conduitd("validate", "-c", str(polling), timeout=60)
        assert refused.returncode == 2 and "op_column" in refused.stdout + refused.stderr \
            and "needs mode 'log'" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    finally:
        await conn.close()


async def test_a_truncate_stops_the_pipeline_until_the_table_is_read_again(
        tmp_path: Path, logical_pg: PrivatePostgres) -> None:
    """A publication that does not send TRUNCATE is refused; a TRUNCATE stops the pipeline (exit 1)
    after the changes before it are written, saying what to do; emptying the destination and
    resetting the checkpoint reads the table again, and it ends equal to the source."""
    conn = await asyncpg.connect(logical_pg.dsn)
    try:
        await conn.execute("CREATE TABLE trunc (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO trunc SELECT g, 'v' || g FROM generate_series(1, 10) g")
        config = make_config(tmp_path, logical_pg.dsn, "trunc", "upsert", unique_key=["id"])
        setup(config)
        await conn.execute("ALTER PUBLICATION conduitd_trunc SET (publish = 'insert, update, delete')")
        old = conduitd("run", "-c", str(config), "--once", timeout=120)
        assert old.returncode == 2 and "does not publish TRUNCATE" in old.stdout + old.stderr, old.stdout + old.stderr
        fixed = conduitd("cdc", "setup", "-c", str(config), "--apply", timeout=60)
        assert fixed.returncode == 0 and "ALTER PUBLICATION" in fixed.stdout, fixed.stdout + fixed.stderr
        run_once(config)
        await conn.execute("INSERT INTO trunc SELECT g, 'v' || g FROM generate_series(11, 20) g")
        await conn.execute("TRUNCATE trunc")
        await conn.execute("INSERT INTO trunc SELECT g, 'w' || g FROM generate_series(100, 105) g")
        for _ in range(2):  # stopped again at the same place: nothing after the TRUNCATE is written
            stopped = conduitd("run", "-c", str(config), "--once", timeout=120)
            said = stopped.stdout + stopped.stderr
            assert stopped.returncode == 1 and "public.trunc was truncated at the source" in said \
                and "conduitd checkpoints reset -p trunc" in said, said[-3000:]
            assert [r[0] for r in destination(tmp_path, "SELECT id FROM trunc ORDER BY id")] == list(range(1, 21))
        with sqlite3.connect(tmp_path / "out.db") as db:
            db.execute("DELETE FROM trunc")
        reset = conduitd("checkpoints", "reset", "-c", str(config), "-p", "trunc", timeout=60)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        run_once(config)
        assert destination(tmp_path, "SELECT id, v FROM trunc ORDER BY id") == \
            [(r["id"], r["v"]) for r in await conn.fetch("SELECT id, v FROM trunc ORDER BY id")]
    finally:
        await conn.close()


async def test_into_postgresql_changes_and_an_alter_table_survive_sigkills(
        tmp_path: Path, logical_pg: PrivatePostgres, pg_dsn: str, pg_schema: str) -> None:
    """The same load into a PostgreSQL destination (upsert), the daemon SIGKILLed twice: once
    during the snapshot, once after the ALTER TABLE; the table ends equal to the source row by row
    and the slot stands at the destination's checkpoint."""
    conn = await asyncpg.connect(logical_pg.dsn)
    out = await asyncpg.connect(pg_dsn)

    async def position() -> dict[str, Any] | None:
        try:
            text = await out.fetchval(f'SELECT position::text FROM "{pg_schema}".conduitd_checkpoints '
                                      "WHERE pipeline = 'load_pg'")
        except asyncpg.UndefinedTableError:
            return None
        return json.loads(text) if text else None

    try:
        await conn.execute("CREATE TABLE load_pg (id int PRIMARY KEY, name text, amount numeric(10,2))")
        await conn.execute("INSERT INTO load_pg SELECT g, 'n' || g, g / 10.0 FROM generate_series(1, 4000) g")
        config = write_config(tmp_path / "conduitd.yaml", {
            "service": {"log_format": "json"},
            "sources": [{"name": "src", "type": "postgres", "mode": "log", "dsn": logical_pg.dsn,
                         "poll_interval": "0.1s"}],
            "destinations": [{"name": "out", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
            "resources": [{"name": "load_pg", "source": "src", "destination": "out", "source_table": "public.load_pg",
                           "mode": "upsert", "unique_key": ["id"], "batch": {"max_rows": 200, "max_wait": "0.1s"}}],
        })
        setup(config)
        log = tmp_path / "daemon.log"
        altered = asyncio.Event()
        proc = start_daemon(config, log)
        writer: asyncio.Task[None] | None = None
        try:
            deadline = time.monotonic() + 60
            while await position() is None:  # the first chunks committed (of the snapshot, most likely)
                assert proc.poll() is None and time.monotonic() < deadline, tail(log)
                await asyncio.sleep(0.02)
            writer = asyncio.create_task(_write_load(logical_pg.dsn, 16, 300, altered, "load_pg", 4001))
            proc.kill()  # 1: in the snapshot, with changes arriving
            proc.wait(timeout=30)
            proc = start_daemon(config, log)
            await asyncio.wait_for(altered.wait(), 60)
            first = await position()
            while (await position()) == first or (await position() or {}).get("phase") != "log":
                assert proc.poll() is None and time.monotonic() < deadline, tail(log)
                await asyncio.sleep(0.02)
            proc.kill()  # 2: in the log, after the ALTER TABLE
            proc.wait(timeout=30)
            proc = start_daemon(config, log)
            await asyncio.wait_for(writer, 120)
        finally:
            stop_daemon(proc)
            if writer is not None and not writer.done():
                writer.cancel()
        run_once(config)
        source = _normal(list(await conn.fetch("SELECT id, name, amount::text, note FROM load_pg")))
        copied = _normal(list(await out.fetch(f'SELECT id, name, amount::text, note FROM "{pg_schema}".load_pg')))
        assert len(copied) == len(source)
        assert copied == source, next((a, b) for a, b in zip(copied, source, strict=False) if a != b)
        assert any(r[3] is not None for r in source)  # the new column arrived
        stored = await position()
        assert stored is not None and stored["lsn"] is not None
        assert await slot_position(conn, "conduitd_load_pg") == stored["lsn"]
    finally:
        await conn.close()
        await out.close()
