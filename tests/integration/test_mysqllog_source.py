"""Log-based change capture from MariaDB (`type: mysql, mode: log`) against a throwaway `mariadbd`
with the ROW binlog on: the snapshot hands over to the log with no gap and no duplicate; --once
stops where the binlog stood at its start; a transaction larger than a chunk resumes inside;
`validate` names the settings and grants missing; a purged binlog is a clear error; and inserts,
updates, deletes and an ALTER TABLE under load survive SIGKILLs of the real daemon: the SQLite
destination equals the source row by row."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from conduitd.core.records import Chunk
from conduitd.sources.base import FixedCheckpoints
from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config
from tests.helpers.private_mariadb import PrivateMariadb, create_private_mariadb, missing_binaries

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def binlog_server() -> Iterator[PrivateMariadb]:
    from tests.conftest import require_or_skip

    missing = missing_binaries()
    if missing:
        require_or_skip(missing)
    server = create_private_mariadb()
    try:
        yield server
    finally:
        server.remove()


def run_sql(server: PrivateMariadb, *statements: str, user: str = "root") -> list[tuple[Any, ...]]:
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user=user, autocommit=True, read_timeout=60)
    try:
        with conn.cursor() as cursor:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall())
            return rows
    finally:
        conn.close()


@pytest.fixture
def database(binlog_server: PrivateMariadb, request: pytest.FixtureRequest) -> str:
    name = "db_" + str(request.node.name).removeprefix("test_")[:40]
    run_sql(binlog_server, f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}`")
    return name


def make_config(tmp_path: Path, dsn: str, table: str, mode: str, **pipeline: Any) -> Path:
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"health_port": 0, "log_format": "json"},
        "sources": [{"name": "src", "type": "mysql", "mode": "log", "dsn": dsn, "poll_interval": "0.2s"}],
        "destinations": [{"name": "out", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": table, "source": "src", "destination": "out", "source_table": table,
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


def _source(config_path: Path, *, max_rows: int, deletes: bool, once: bool = True) -> Any:
    from conduitd.configfile import load_config
    from conduitd.sources.mysqllog import MysqlLogSource

    config = load_config(config_path)
    return MysqlLogSource(config.source("src"), config.resources[0], once=once, max_rows=max_rows,  # type: ignore[arg-type]
                          deletes=deletes, unreachable_after=10)


async def _read(config_path: Path, partition: str, position: dict[str, Any] | None, *, max_rows: int = 1000,
                deletes: bool = True) -> list[Chunk]:
    source = _source(config_path, max_rows=max_rows, deletes=deletes)
    try:
        committed = {} if position is None else {partition: position}
        return [c async for c in source.chunks(FixedCheckpoints(committed), asyncio.Event())]
    finally:
        await source.close()


def _ids(chunks: list[Chunk]) -> list[tuple[int, str]]:
    return [(r["id"], r["label"]) for c in chunks for r in c.rows.to_pylist()]


async def test_the_snapshot_hands_over_to_the_log_without_gap_or_duplicate(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """Append mode, deletes left out: writes committed while the snapshot is read (after its first
    chunk) are exactly the log's first changes, and no row the snapshot read comes again."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.handover (id int PRIMARY KEY, label varchar(40))",
            f"INSERT INTO `{database}`.handover SELECT seq, CONCAT('before ', seq) FROM `{database}`.seq_1_to_300")
    config = make_config(tmp_path, binlog_server.dsn(database), "handover", "append")
    source = _source(config, max_rows=70, deletes=False)
    reading = source.chunks(FixedCheckpoints({}), asyncio.Event())
    try:
        chunks = [await anext(reading)]
        assert chunks[0].end["phase"] == "snapshot" and chunks[0].end["after"] == ["70"]
        run_sql(binlog_server,
                f"INSERT INTO `{database}`.handover SELECT seq, 'during' FROM `{database}`.seq_301_to_400",
                f"UPDATE `{database}`.handover SET label = 'changed' WHERE id = 250",
                f"DELETE FROM `{database}`.handover WHERE id = 260")
        chunks += [c async for c in reading]
    finally:
        await reading.aclose()
        await source.close()
    snapshot = [c for c in chunks if c.start is None or c.start["phase"] == "snapshot"]
    log = chunks[len(snapshot):]
    assert _ids(snapshot) == [(i, f"before {i}") for i in range(1, 301)]  # as it stood at its start
    assert sorted(_ids(log)) == sorted([(i, "during") for i in range(301, 401)] + [(250, "changed")])
    assert snapshot[-1].end["phase"] == "log" and log[0].start == snapshot[-1].end
    assert all(b.start == a.end for a, b in itertools.pairwise(chunks))


async def test_once_stops_where_the_binlog_stood_and_a_big_transaction_resumes_inside(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """A 25-row transaction comes as 10 + 10 + 5, the positions say how much of it was handed over
    and a source resumed there reads only the rest; rows written after a --once run started are
    not read by it but by the next run."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.split (id int PRIMARY KEY, label varchar(40))")
    config = make_config(tmp_path, binlog_server.dsn(database), "split", "upsert", unique_key=["id"])
    (snapshot,) = await _read(config, f"{database}.split", None, max_rows=10)
    assert snapshot.rows.num_rows == 0 and snapshot.end["phase"] == "log"
    run_sql(binlog_server, f"INSERT INTO `{database}`.split SELECT seq, 'v' FROM `{database}`.seq_1_to_25")
    chunks = await _read(config, f"{database}.split", snapshot.end, max_rows=10)
    assert [c.rows.num_rows for c in chunks] == [10, 10, 5]
    assert all(c.nbytes == c.rows.nbytes > 0 for c in chunks)  # what batch.max_bytes counts
    assert [c.end.get("done") for c in chunks] == [10, 20, None]
    assert chunks[0].end["pos"] == snapshot.end["pos"] and chunks[2].end["pos"] > snapshot.end["pos"]
    rest = await _read(config, f"{database}.split", chunks[0].end, max_rows=10)
    assert [r for c in rest for r in c.rows.column("id").to_pylist()] == list(range(11, 26))

    source = _source(config, max_rows=10, deletes=True)
    reading = source.chunks(FixedCheckpoints({f"{database}.split": chunks[-1].end}), asyncio.Event())
    try:
        run_sql(binlog_server, f"INSERT INTO `{database}`.split VALUES (26, 'before the run')")
        first = await anext(reading)  # the run has started: where the binlog stands is fixed
        run_sql(binlog_server, f"INSERT INTO `{database}`.split VALUES (27, 'after the start')")
        later = [c async for c in reading]
    finally:
        await reading.aclose()
        await source.close()
    got = [r for c in [first, *later] for r in c.rows.column("id").to_pylist()]
    assert got == [26]
    following = await _read(config, f"{database}.split", ([first, *later])[-1].end, max_rows=10)
    assert [r for c in following for r in c.rows.column("id").to_pylist()] == [27]


async def _drain(reading: Any) -> list[Chunk]:
    return [c async for c in reading]


async def test_an_alter_table_mid_stream_brings_its_column_and_a_stop_ends_the_reader(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """A daemon-mode source reading when `ALTER TABLE ... ADD COLUMN` comes: the rows before keep
    their shape, the rows after carry the new column with its type; lag() shows where it stands;
    a stop ends the reader's thread."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.altered (id int PRIMARY KEY, label varchar(40))")
    config = make_config(tmp_path, binlog_server.dsn(database), "altered", "upsert", unique_key=["id"])
    source = _source(config, max_rows=100, deletes=True, once=False)
    stop = asyncio.Event()
    reading = source.chunks(FixedCheckpoints({}), stop)
    try:
        snapshot = await anext(reading)
        assert snapshot.end["phase"] == "log"
        run_sql(binlog_server, f"INSERT INTO `{database}`.altered VALUES (1, 'old shape')",
                f"ALTER TABLE `{database}`.altered ADD COLUMN amount decimal(8,3)",
                f"INSERT INTO `{database}`.altered VALUES (2, 'new shape', 12.345)",
                f"DELETE FROM `{database}`.altered WHERE id = 1")
        rows: list[dict[str, Any]] = []
        deletes: list[bool] = []
        while len(rows) < 3:
            chunk = await asyncio.wait_for(anext(reading), 30)
            rows += chunk.rows.to_pylist()
            deletes += [False] * chunk.rows.num_rows if chunk.deletes is None else chunk.deletes.tolist()
            if "amount" in chunk.rows.column_names:
                assert str(chunk.rows.schema.field("amount").type) == "decimal128(8, 3)"
        assert [(r["id"], r.get("amount"), d) for r, d in zip(rows, deletes, strict=True)] == \
            [(1, None, False), (2, Decimal("12.345"), False), (1, None, True)]
        rest = asyncio.create_task(_drain(reading))  # the source waits for more, noting its lag
        deadline = time.monotonic() + 30
        while source.lag().get(f"{database}.altered", {}).get("bytes") != 0:  # caught up
            assert time.monotonic() < deadline and not rest.done(), "no lag shown"
            await asyncio.sleep(0.05)
        stop.set()
        assert await asyncio.wait_for(rest, 30) == []
        assert source.lag()[f"{database}.altered"]["seconds"] == 0
    finally:
        await reading.aclose()
        await source.close()
    assert not [t for t in threading.enumerate() if t.name == f"binlog {database}.altered"]


async def test_a_server_restart_is_waited_out_and_the_log_goes_on(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """The server goes away under a daemon-mode source and comes back (in a new binlog file): the
    source says why it waits (`problem()`), then reads on from where it was, nothing lost or doubled."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.restarted (id int PRIMARY KEY)")
    config = make_config(tmp_path, binlog_server.dsn(database), "restarted", "upsert", unique_key=["id"])
    source = _source(config, max_rows=100, deletes=True, once=False)
    stop = asyncio.Event()
    reading = source.chunks(FixedCheckpoints({}), stop)
    try:
        rest: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rest.set_result(None)
        await anext(reading)  # the (empty) snapshot
        run_sql(binlog_server, f"INSERT INTO `{database}`.restarted VALUES (1)")
        first = await asyncio.wait_for(anext(reading), 30)
        assert first.rows.column("id").to_pylist() == [1]
        later: list[Chunk] = []

        async def collect() -> None:
            async for chunk in reading:
                later.append(chunk)

        rest = asyncio.create_task(collect())
        await asyncio.to_thread(binlog_server.stop)
        deadline = time.monotonic() + 30
        while source.problem() is None:
            assert time.monotonic() < deadline and not rest.done(), "no problem shown while the server is down"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(binlog_server.start)
        run_sql(binlog_server, f"INSERT INTO `{database}`.restarted VALUES (2)")
        while not any(c.rows.num_rows for c in later):
            assert time.monotonic() < deadline + 30 and not rest.done(), source.problem()
            await asyncio.sleep(0.05)
        assert source.problem() is None
        stop.set()
        await asyncio.wait_for(rest, 30)
    finally:
        stop.set()
        await asyncio.wait([rest], timeout=30)
        await reading.aclose()
        await source.close()
    assert [i for c in later for i in c.rows.column("id").to_pylist()] == [2]
    assert later[-1].end["file"] != first.end["file"]  # a new binlog file after the restart


async def test_the_table_lock_hand_over_for_mysql_also_has_no_gap(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """MySQL has no Binlog_snapshot_* status: the snapshot starts while a second session holds
    the table read-locked and reads the binlog's end. Forced here on MariaDB: the snapshot sees
    the rows before, the log from that coordinate has exactly the row written after."""
    from conduitd.configfile import load_config
    from conduitd.sources.mysqllog.snapshot import begin_snapshot
    from conduitd.sources.tables.mysql import connect
    from conduitd.sources.tables.mysql_plan import fetch_all

    run_sql(binlog_server, f"CREATE TABLE `{database}`.locked (id int PRIMARY KEY)",
            f"INSERT INTO `{database}`.locked VALUES (1), (2)")
    config_path = make_config(tmp_path, binlog_server.dsn(database), "locked", "upsert", unique_key=["id"])
    settings = load_config(config_path).source("src")
    conn = await connect(settings)  # type: ignore[arg-type]
    try:
        at, _ = await begin_snapshot(conn, lambda: connect(settings),  # type: ignore[arg-type]
                                     f"`{database}`.`locked`", use_status=False)
        run_sql(binlog_server, f"INSERT INTO `{database}`.locked VALUES (3)")
        assert [r[0] for r in await fetch_all(conn, f"SELECT id FROM `{database}`.locked ORDER BY id")] == ["1", "2"]
    finally:
        conn.close()
    start = {"phase": "log", "file": at.file, "pos": at.pos, "gtid": None}
    chunks = await _read(config_path, f"{database}.locked", start)
    assert [i for c in chunks for i in c.rows.column("id").to_pylist()] == [3]


async def test_validate_names_missing_settings_and_grants(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    run_sql(binlog_server, f"CREATE TABLE `{database}`.checked (id int PRIMARY KEY)",
            "CREATE USER IF NOT EXISTS 'reader'@'127.0.0.1'",
            f"GRANT SELECT ON `{database}`.* TO 'reader'@'127.0.0.1'")
    dsn = f"mysql://reader@127.0.0.1:{binlog_server.port}/{database}"
    config = str(make_config(tmp_path, dsn, "checked", "upsert", unique_key=["id"]))
    denied = conduitd("validate", "-c", config, timeout=60)
    assert denied.returncode == 2, denied.stdout + denied.stderr
    assert "REPLICATION SLAVE" in denied.stdout and "BINLOG MONITOR" in denied.stdout, denied.stdout
    run_sql(binlog_server, "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'reader'@'127.0.0.1'")
    granted = conduitd("validate", "-c", config, timeout=60)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "log_bin ON, ROW format" in granted.stdout and "key (id)" in granted.stdout
    run_sql(binlog_server, f"INSERT INTO `{database}`.checked VALUES (1)")
    ran = conduitd("run", "-c", config, "--once", timeout=120)  # those grants are all the source needs
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run_sql(binlog_server, f"INSERT INTO `{database}`.checked VALUES (2)")
    ran = conduitd("run", "-c", config, "--once", timeout=120)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert destination(tmp_path, "SELECT id FROM checked ORDER BY id") == [(1,), (2,)]
    again = conduitd("validate", "-c", config, timeout=60)
    assert "source: position" in again.stdout and "byte(s) of binlog after it" in again.stdout, again.stdout


async def test_a_purged_binlog_position_is_a_clear_error(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    run_sql(binlog_server, f"CREATE TABLE `{database}`.purged (id int PRIMARY KEY, label varchar(40))")
    config = make_config(tmp_path, binlog_server.dsn(database), "purged", "upsert", unique_key=["id"])
    (snapshot,) = await _read(config, f"{database}.purged", None)
    run_sql(binlog_server, f"INSERT INTO `{database}`.purged VALUES (1, 'lost')", "FLUSH BINARY LOGS")
    (newest, _size), *_ = reversed(run_sql(binlog_server, "SHOW BINARY LOGS"))
    deadline = time.monotonic() + 30
    while run_sql(binlog_server, "SHOW BINARY LOGS")[0][0] != newest:  # kept until its binlog checkpoint
        assert time.monotonic() < deadline, run_sql(binlog_server, "SHOW BINARY LOGS")
        run_sql(binlog_server, f"PURGE BINARY LOGS TO '{newest}'")
        await asyncio.sleep(0.1)
    from conduitd.errors import ConduitError

    with pytest.raises(ConduitError, match=r"no longer on the server.*checkpoints reset"):
        await _read(config, f"{database}.purged", snapshot.end)
    ahead = {**snapshot.end, "file": "binlog.999999"}  # a position from before a RESET MASTER
    with pytest.raises(ConduitError, match=r"past the server's binlog end.*checkpoints reset"):
        await _read(config, f"{database}.purged", ahead)


def _write_load(server: PrivateMariadb, database: str, seed: int, altering: threading.Event,
                altered: threading.Event, halt: threading.Event) -> None:
    """Random inserts, updates and deletes in transactions until `halt`; an ALTER TABLE when
    `altering` is set."""
    rng = random.Random(seed)
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", database=database, autocommit=False,
                           read_timeout=60)
    try:
        with conn.cursor() as cursor:
            next_id = 1001
            for step in range(100_000):
                if halt.is_set():
                    return
                if altering.is_set() and not altered.is_set():
                    cursor.execute("ALTER TABLE loaded ADD COLUMN note varchar(20)")
                    altered.set()
                for _ in range(rng.randint(1, 8)):
                    action = rng.random()
                    if action < 0.4:
                        cursor.execute("INSERT INTO loaded (id, name, amount) VALUES (%s, %s, %s)",
                                       (next_id, f"n{next_id}", Decimal(rng.randint(0, 99999)) / 100))
                        next_id += 1
                    elif action < 0.8:
                        target = rng.randint(1, next_id)
                        if altered.is_set():
                            cursor.execute("UPDATE loaded SET amount = amount + 1, note = %s WHERE id = %s",
                                           (f"s{step}", target))
                        else:
                            cursor.execute("UPDATE loaded SET amount = amount + 1 WHERE id = %s", (target,))
                    else:
                        cursor.execute("DELETE FROM loaded WHERE id = %s", (rng.randint(1, next_id),))
                conn.commit()
                time.sleep(0.002)  # pacing, not synchronisation: a load spread over the kills
    finally:
        conn.close()


def _normal(rows: list[tuple[Any, ...]]) -> list[tuple[int, str | None, str | None, str | None]]:
    return sorted((int(r[0]), r[1], None if r[2] is None else f"{Decimal(str(r[2])):.2f}", r[3]) for r in rows)


async def test_changes_and_an_alter_table_survive_sigkills(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    run_sql(binlog_server, f"CREATE TABLE `{database}`.loaded (id int PRIMARY KEY, name varchar(20), "
                           "amount decimal(10,2))",
            f"INSERT INTO `{database}`.loaded SELECT seq, CONCAT('n', seq), seq / 10 FROM `{database}`.seq_1_to_1000")
    config = make_config(tmp_path, binlog_server.dsn(database), "loaded", "upsert", unique_key=["id"],
                         batch={"max_rows": 150, "max_wait": "0.1s"})
    log = tmp_path / "daemon.log"
    altering, altered, halt = threading.Event(), threading.Event(), threading.Event()
    writer = asyncio.create_task(asyncio.to_thread(_write_load, binlog_server, database, 7, altering, altered, halt))
    proc = start_daemon(config, log)

    async def committed_again() -> None:
        seen, deadline = checkpoint(tmp_path, "loaded"), time.monotonic() + 60
        while checkpoint(tmp_path, "loaded") == seen:  # a commit since the last start
            assert proc.poll() is None and time.monotonic() < deadline and not writer.done(), tail(log)
            await asyncio.sleep(0.02)

    try:
        for kill in range(4):
            await committed_again()
            if kill == 2:  # two kills before the ALTER, two after
                altering.set()
                await asyncio.wait_for(asyncio.to_thread(altered.wait), 60)
                await committed_again()
            proc.kill()
            proc.wait(timeout=30)
            proc = start_daemon(config, log)
        await committed_again()
    finally:
        halt.set()
        await asyncio.wait([writer], timeout=60)
        stop_daemon(proc)
    writer.result()  # the load itself did not fail
    done = conduitd("run", "-c", str(config), "--once", timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    source = _normal(run_sql(binlog_server, f"SELECT id, name, CAST(amount AS CHAR), note FROM `{database}`.loaded"))
    copied = _normal(destination(tmp_path, "SELECT id, name, amount, note FROM loaded"))
    assert len(copied) == len(source)
    assert copied == source, next((a, b) for a, b in zip(copied, source, strict=False) if a != b)
    assert any(r[3] is not None for r in source)  # the new column arrived
    position = checkpoint(tmp_path, "loaded")
    assert position is not None and position["phase"] == "log" and "done" not in position


async def test_op_column_appends_the_history_with_deletes_as_rows(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """Append mode with `op_column`: snapshot rows say `snapshot`, then every change is a row in
    binlog order, a delete (and the old key of an update that moves the key) as its key alone."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.ops (id int PRIMARY KEY, label varchar(40))",
            f"INSERT INTO `{database}`.ops VALUES (1, 'a'), (2, 'b')")
    config = make_config(tmp_path, binlog_server.dsn(database), "ops", "append")
    loaded = yaml.safe_load(config.read_text())
    loaded["sources"][0]["op_column"] = "_op"
    write_config(config, loaded)
    (snapshot,) = await _read(config, f"{database}.ops", None, deletes=False)
    assert snapshot.rows.to_pylist() == [{"id": 1, "label": "a", "_op": "snapshot"},
                                         {"id": 2, "label": "b", "_op": "snapshot"}]
    run_sql(binlog_server, f"INSERT INTO `{database}`.ops VALUES (3, 'c')",
            f"UPDATE `{database}`.ops SET label = 'a2' WHERE id = 1",
            f"DELETE FROM `{database}`.ops WHERE id = 2",
            f"UPDATE `{database}`.ops SET id = 4 WHERE id = 3")
    chunks = await _read(config, f"{database}.ops", snapshot.end, deletes=False)
    assert [r for c in chunks for r in c.rows.to_pylist()] == [
        {"id": 3, "label": "c", "_op": "insert"}, {"id": 1, "label": "a2", "_op": "update"},
        {"id": 2, "label": None, "_op": "delete"}, {"id": 3, "label": None, "_op": "delete"},
        {"id": 4, "label": "c", "_op": "update"}]
    assert all(c.deletes is None for c in chunks), "append mode: deletes are rows, not a delete mask"

    run_sql(binlog_server, f"ALTER TABLE `{database}`.ops ADD COLUMN `_op` text")
    with pytest.raises(Exception, match="op_column '_op' is a column of"):
        await _read(config, f"{database}.ops", chunks[-1].end, deletes=False)
    loaded["sources"][0]["mode"] = "poll"
    write_config(config, loaded)
    refused = conduitd("validate", "-c", str(config))
    assert refused.returncode == 2 and "op_column says which change made each row" in refused.stdout + refused.stderr


async def test_a_truncate_stops_the_pipeline_until_the_table_is_read_again(
        tmp_path: Path, binlog_server: PrivateMariadb, database: str) -> None:
    """A TRUNCATE carries no keys: the run writes what came before it, then stops (exit 1) with what
    to do, at the same place every time; after the destination is emptied and the checkpoint reset,
    the next run reads a new snapshot and the destination equals the source."""
    run_sql(binlog_server, f"CREATE TABLE `{database}`.trunc (id int PRIMARY KEY, label varchar(40))",
            f"INSERT INTO `{database}`.trunc VALUES (1, 'a'), (2, 'b')")
    config = make_config(tmp_path, binlog_server.dsn(database), "trunc", "upsert", unique_key=["id"])
    first = conduitd("--once", "-c", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    run_sql(binlog_server, f"INSERT INTO `{database}`.trunc VALUES (10, 'before')",
            f"TRUNCATE TABLE `{database}`.trunc", f"INSERT INTO `{database}`.trunc VALUES (20, 'after')")
    for _ in range(2):
        stopped = conduitd("--once", "-c", str(config))
        said = stopped.stdout + stopped.stderr
        assert stopped.returncode == 1 and f"{database}.trunc was truncated at the source" in said \
            and "conduitd checkpoints reset -p trunc" in said, said[-3000:]
        assert destination(tmp_path, "SELECT id FROM trunc ORDER BY id") == [(1,), (2,), (10,)]
    with sqlite3.connect(tmp_path / "out.db") as db:
        db.execute("DELETE FROM trunc")
    reset = conduitd("checkpoints", "reset", "-c", str(config), "-p", "trunc")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    again = conduitd("--once", "-c", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    assert destination(tmp_path, "SELECT id, label FROM trunc ORDER BY id") == [(20, "after")]
