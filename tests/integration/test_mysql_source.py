"""The MySQL/MariaDB table source against the real server (issue 10), through `conduitd --once`
into PostgreSQL: late commits and groups of equal cursor values are never lost, types come from
the catalog exactly, whole-table and query reads, clear errors, no password shown.

Rows written with `NOW(6)` are readable a second after they were written (the bound's margin):
a test waits for the server's own clock (and other sessions' transactions: the bound is
server-wide) to pass that, never for a fixed time."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import require_or_skip

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("asyncmy")
import asyncmy

HOST, _, PORT = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306").partition(":")
PORT_NUMBER = int(PORT or 3306)


async def my_connect(database: str | None = None, *, autocommit: bool = True) -> Any:
    return await asyncmy.connect(host=HOST, port=PORT_NUMBER, user="root", password="", database=database,
                                 autocommit=autocommit, charset="utf8mb4", connect_timeout=5)


async def my_run(conn: Any, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


@pytest.fixture(scope="module")
def my_database() -> Iterator[str]:
    """A database of this module's own, dropped at the end."""
    name = f"conduitd_msrc_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await my_connect()
        try:
            await my_run(conn, sql)
        finally:
            conn.close()

    try:
        asyncio.run(admin(f"CREATE DATABASE `{name}`"))
    except (OSError, TimeoutError, asyncmy.errors.MySQLError) as exc:
        require_or_skip(f"MariaDB/MySQL is not reachable at {HOST}:{PORT_NUMBER}: {exc}")
    yield name
    asyncio.run(admin(f"DROP DATABASE `{name}`"))


@pytest.fixture
async def my(my_database: str) -> AsyncIterator[Any]:
    conn = await my_connect(my_database)
    yield conn
    conn.close()


@pytest.fixture
async def table(my: Any) -> AsyncIterator[str]:
    """A fresh source table name (tables of one test start with it)."""
    name = f"src_{uuid.uuid4().hex[:8]}"
    yield name
    for (other,) in await my_run(my, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                     "DATABASE() AND TABLE_NAME LIKE %s", (name + "%",)):
        await my_run(my, f"DROP TABLE `{other}`")


def write_config(tmp_path: Path, database: str, pg_dsn: str, schema: str, pipeline: str, *,
                 source: str = "") -> Path:
    path = tmp_path / "conduitd.yaml"
    connection = source or f"host: {HOST}, port: {PORT_NUMBER}, user: root, database: {database}"
    path.write_text(textwrap.dedent(f"""\
        sources:
          - {{name: db, type: mysql, {connection}}}
        destinations:
          - {{name: wh, type: postgres, dsn: "{pg_dsn}", schema: {schema}}}
        resources:
        """) + textwrap.indent(textwrap.dedent(pipeline), "  "))
    return path


async def run(config: Path) -> tuple[int, str]:
    """`conduitd --once -c config` as a process: (exit code, standard error)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "--once", "-c", str(config),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, err.decode()


async def once(config: Path) -> None:
    code, err = await run(config)
    assert code == 0, err


async def until(my: Any, condition: str) -> None:
    """Wait until the server says `condition` (SQL) holds."""
    for _ in range(300):
        (ready,), = await my_run(my, f"SELECT {condition}")
        if ready:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server's clock did not reach {condition}")


async def readable(my: Any, moment: str) -> None:
    """Wait until the bound passes `moment` (SQL of a Unix time): the server's clock and every other
    session's open write transaction are more than a second past it."""
    await until(my, f"""LEAST(UNIX_TIMESTAMP(NOW(6)), COALESCE((
        SELECT UNIX_TIMESTAMP(CONVERT_TZ(MIN(trx_started), 'SYSTEM', '+00:00')) FROM information_schema.INNODB_TRX
        WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_is_read_only = 0
          AND CAST(trx_id AS UNSIGNED) BETWEEN 1 AND 281474976710655), UNIX_TIMESTAMP(NOW(6)))) - 1 > ({moment})""")


async def rows(pg: asyncpg.Connection, schema: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    return [dict(r) for r in await pg.fetch(f'SELECT * FROM "{schema}"."{table}" ORDER BY {order}')]


async def test_a_late_commit_is_read_once_it_commits_timestamp_cursor(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL DEFAULT NOW(6), "
                     f"v TEXT, KEY (ts))")
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, NOW(6) - INTERVAL 1 HOUR, 'before')")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          source_table: {table}
          table: dst
          incremental: {{column: ts}}
        """)
    late = await my_connect(my_database, autocommit=False)
    try:
        await my_run(late, "START TRANSACTION")
        await my_run(late, f"INSERT INTO `{table}` (id, v) VALUES (2, 'late')")  # ts: now
        await my_run(my, f"INSERT INTO `{table}` (id, v) VALUES (3, 'early')")  # commits first, a later ts
        (committed,), = await my_run(my, f"SELECT UNIX_TIMESTAMP(ts) FROM `{table}` WHERE id = 3")
        await until(my, f"UNIX_TIMESTAMP(NOW(6)) - 1 > {committed}")  # a poller without the guard reads row 3 now
        await once(config)
        # A naive `ts > watermark` poller reads 3 here and never 2; the bound held the read back.
        assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]
        await my_run(late, "COMMIT")
    finally:
        late.close()
    await readable(my, f"SELECT UNIX_TIMESTAMP(MAX(ts)) FROM `{table}`")
    await once(config)
    assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "dst")] == [(1, "before"), (2, "late"), (3, "early")]
    await once(config)
    assert len(await rows(pg, pg_schema, "dst")) == 3


async def test_a_late_commit_is_read_once_it_commits_sequential_cursor(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, v TEXT)")
    await my_run(my, f"INSERT INTO `{table}` (v) VALUES ('first')")
    (inserted,), = await my_run(my, "SELECT UNIX_TIMESTAMP(NOW(6))")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - {{name: copy, source: db, destination: wh, source_table: {table}, table: dst, incremental_column: id}}
        """)
    await readable(my, str(inserted))  # another test's write transaction on the server would hold 1 back
    await once(config)
    late = await my_connect(my_database, autocommit=False)
    try:
        await my_run(late, "START TRANSACTION")
        await my_run(late, f"INSERT INTO `{table}` (v) VALUES ('late')")  # takes id 2
        await my_run(my, f"INSERT INTO `{table}` (v) VALUES ('early')")  # id 3, committed first
        await once(config)
        assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]  # 3 waits for 2's transaction
        await my_run(late, "COMMIT")
        (committed,), = await my_run(my, "SELECT UNIX_TIMESTAMP(NOW(6))")
    finally:
        late.close()
    await readable(my, str(committed))  # no other session's write transaction started before the commit
    await once(config)
    assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "dst")] == [(1, "first"), (2, "late"), (3, "early")]


async def test_five_thousand_rows_of_one_timestamp_arrive_once_in_batches_of_a_thousand(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts TIMESTAMP(6) NOT NULL, KEY (ts))")
    await my_run(my, f"INSERT INTO `{table}` SELECT seq, NOW(6) FROM seq_1_to_5000")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          source_table: {table}
          table: dst
          incremental: {{column: ts, strategy: timestamp}}
          batch: {{max_rows: 1000}}
        """)
    await readable(my, f"SELECT UNIX_TIMESTAMP(MAX(ts)) FROM `{table}`")
    await once(config)
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == list(range(1, 5001))
    checkpoints = await pg.fetch(f'SELECT position FROM "{pg_schema}".conduitd_checkpoints')
    assert len(checkpoints) == 1 and '"key": ["5000"]' in checkpoints[0]["position"].replace('":[', '": [')


async def test_catalog_types_reach_the_destination_exactly(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"""CREATE TABLE `{table}` (id INT PRIMARY KEY, price DECIMAL(12,2), big DECIMAL(65,30),
        at TIMESTAMP(6) NULL, local DATETIME(6), day DATE, doc JSON, raw VARBINARY(8), blob_ BLOB,
        feeling ENUM('sad','ok'), tags SET('a','b'), note TEXT, flag BOOLEAN, tiny TINYINT, huge BIGINT UNSIGNED,
        bits BIT(10), ratio DOUBLE, single FLOAT, year_ YEAR, span TIME(3))""")
    await my_run(my, "SET SESSION time_zone = '+02:00', SESSION sql_mode = ''")  # a zero date may be written
    await my_run(my, f"""INSERT INTO `{table}` VALUES
        (1, 12345.67, 12345678901234567890123456789012345.123456789012345678901234567891,
         '2026-11-30 04:05:06.123456', '2026-11-30 04:05:06.5', '2026-11-30', '{{"a": [1, 2]}}', x'00ff10', x'',
         'ok', 'a,b', 'two\\nlines, "quoted" ☃ 𝄞', TRUE, -128, 18446744073709551615, b'1000000001', 0.1, 1.2345678,
         2024, '-838:59:59.5'),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', FALSE, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL),
        (3, NULL, NULL, NULL, '0000-00-00 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, 'zero date', NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL)""")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - {{name: copy, source: db, destination: wh, source_table: {table}, table: dst}}
        """)
    await once(config)
    got = await rows(pg, pg_schema, "dst")
    assert [r["id"] for r in got] == [1, 2]
    first, second = got
    assert first["price"] == Decimal("12345.67")
    # Beyond 38 digits the PostgreSQL destination keeps the exact text (a known limit of its dialect).
    assert Decimal(first["big"]) == Decimal("12345678901234567890123456789012345.123456789012345678901234567891")
    assert first["at"].isoformat() == "2026-11-30T02:05:06.123456+00:00"  # written at +02:00: UTC 02:05
    assert first["local"].isoformat() == "2026-11-30T04:05:06.500000"  # no zone: as written
    assert str(first["day"]) == "2026-11-30"
    assert first["doc"] == '{"a": [1, 2]}'
    assert first["raw"] == b"\x00\xff\x10" and first["blob_"] == b""
    assert (first["feeling"], first["tags"], first["note"]) == ("ok", "a,b", 'two\nlines, "quoted" ☃ 𝄞')
    assert (first["flag"], first["tiny"], first["huge"], first["bits"]) == (True, -128, 18446744073709551615, 513)
    assert (first["ratio"], first["year_"], first["span"]) == (0.1, 2024, "-838:59:59.500")
    assert first["single"] == 1.2345677614212036  # the FLOAT's exact value (its own text has 6 digits)
    assert second["note"] == "" and second["price"] is None and second["flag"] is False and second["raw"] is None
    types = dict(await pg.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = $1 AND table_name = 'dst'", pg_schema))
    assert types["price"] == "numeric" and types["at"] == "timestamp with time zone"
    assert types["local"] == "timestamp without time zone" and types["raw"] == "bytea"
    assert types["flag"] == "boolean" and types["huge"] == "numeric"
    assert types["doc"] == "jsonb"  # a JSON column (tests/integration/test_source_types.py)
    dlq = await pg.fetch(f'SELECT rule, reason, payload FROM "{pg_schema}".dst_dlq')
    assert len(dlq) == 1 and dlq[0]["rule"] == "decode" and "0000-00-00 00:00:00" in dlq[0]["reason"]
    assert '"zero date"' in dlq[0]["payload"]


async def test_a_whole_table_is_read_once_per_run_and_upsert_absorbs_the_rereads(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (k VARCHAR(10), n INT, v TEXT, PRIMARY KEY (k, n))")
    await my_run(my, f"INSERT INTO `{table}` SELECT CONCAT('k', seq % 7), seq, 'v' FROM seq_1_to_2500")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          source_table: {my_database}.{table}
          table: dst
          mode: upsert
          unique_key: [k, n]
          batch: {{max_rows: 1000}}
        """)
    await once(config)
    assert len(await rows(pg, pg_schema, "dst", order="k, n")) == 2500
    await my_run(my, f"UPDATE `{table}` SET v = 'w' WHERE n = 7")
    await once(config)
    got = await rows(pg, pg_schema, "dst", order="k, n")
    assert len(got) == 2500 and [r["v"] for r in got if r["n"] == 7] == ["w"]


async def test_a_query_with_a_unique_key_is_read_incrementally(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, amount DECIMAL(10,2))")
    await my_run(my, f"INSERT INTO `{table}` SELECT seq, seq * 10 FROM seq_1_to_30")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          query: 'SELECT id, amount * 2 AS doubled, id % 2 = 0 AS even FROM `{table}` WHERE id % 3 = 0;'
          unique_key: [id]
          incremental: {{column: id, strategy: cursor}}
          table: dst
          batch: {{max_rows: 4}}
        """)
    await once(config)
    assert [(r["id"], r["doubled"]) for r in await rows(pg, pg_schema, "dst")] == [
        (i, Decimal(i * 20)) for i in range(3, 31, 3)]


@pytest.mark.parametrize(("pipeline", "message"), [
    ("- {name: copy, source: db, destination: wh, source_table: nowhere}", "source table"),
    ("- {name: copy, source: db, destination: wh, source_table: TABLE}", "has no primary key"),
    ("- {name: copy, source: db, destination: wh, source_table: TABLE, unique_key: [id], incremental_column: nah}",
     "incremental column 'nah' is not in the source"),
    ("- {name: copy, source: db, destination: wh, source_table: TABLE, unique_key: [id], incremental_column: v}",
     "set incremental.strategy"),
    ("- {name: copy, source: db, destination: wh, query: 'SELECT nope FROM TABLE', unique_key: [id]}",
     "the query cannot run"),
])
async def test_what_cannot_be_read_is_a_config_error(my: Any, my_database: str, table: str, pg_dsn: str,
                                                      pg_schema: str, tmp_path: Path, pipeline: str,
                                                      message: str) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT, v TEXT)")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, pipeline.replace("TABLE", table) + "\n")
    code, err = await run(config)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err


async def test_a_wrong_password_is_refused_without_showing_it(my_database: str, pg_dsn: str, pg_schema: str,
                                                              tmp_path: Path) -> None:
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema,
                          "- {name: copy, source: db, destination: wh, source_table: src}\n",
                          source=f"dsn: 'mysql://nobody_here:Sw0rdfish-secret@{HOST}:{PORT_NUMBER}/{my_database}'")
    code, err = await run(config)
    assert code in (2, 5), err
    assert "Sw0rdfish-secret" not in err and "nobody_here" in err


async def test_without_the_process_privilege_the_guard_is_off_and_says_so(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    user = f"cd_{uuid.uuid4().hex[:8]}"
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL)")
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, NOW(6) - INTERVAL 1 HOUR)")
    await my_run(my, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'Reader-pw-1'")
    try:
        await my_run(my, f"GRANT SELECT ON `{my_database}`.* TO '{user}'@'%'")
        config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
            - {{name: copy, source: db, destination: wh, source_table: {table}, table: dst, incremental_column: ts}}
            """, source=f"host: {HOST}, port: {PORT_NUMBER}, user: {user}, password: Reader-pw-1, "
                        f"database: {my_database}")
        code, err = await run(config)
        assert code == 0, err
        assert "late-commit guard is off" in err and "PROCESS" in err and "Reader-pw-1" not in err
        assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]
    finally:
        await my_run(my, f"DROP USER '{user}'@'%'")


async def test_an_unreachable_server_ends_the_run_with_exit_code_5(my_database: str, pg_dsn: str, pg_schema: str,
                                                                   tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema,
                          "- {name: copy, source: db, destination: wh, source_table: src}\n",
                          source=f"host: 127.0.0.1, port: {port}, user: root, database: {my_database}")
    config.write_text('service: {once_retry_timeout: "1s", retry_max_wait: "200ms"}\n' + config.read_text())
    code, err = await run(config)
    assert code == 5, err
    assert f"cannot connect to MySQL at 127.0.0.1:{port}/{my_database}" in err and "Traceback" not in err


async def test_lookback_waits_for_rows_whose_application_timestamps_arrive_late(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts TIMESTAMP(6) NOT NULL, KEY (ts))")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          source_table: {table}
          table: dst
          incremental: {{column: ts, lookback_seconds: 60}}
        """)
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, NOW(6) - INTERVAL 100 SECOND), "
                     "(2, NOW(6) - INTERVAL 30 SECOND)")
    await once(config)
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]  # 2 is younger than the lookback
    await my_run(my, f"INSERT INTO `{table}` VALUES (3, NOW(6) - INTERVAL 90 SECOND)")  # stamped early, late commit
    await once(config)
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1, 3]


async def test_validate_reports_the_cursor_index_and_the_lag(my: Any, my_database: str, table: str, pg_dsn: str,
                                                             pg_schema: str, tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts TIMESTAMP(6) NOT NULL)")
    await my_run(my, f"INSERT INTO `{table}` SELECT seq, NOW(6) - INTERVAL 1 DAY FROM seq_1_to_30")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - {{name: copy, source: db, destination: wh, source_table: {table}, table: dst, incremental: {{column: ts}}}}
        """)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "validate", "--json", "-c",
                                                   str(config), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    found = {c["check"]: (c["status"], c["detail"]) for c in json.loads(out or b"[]")}
    assert found["source: cursor index"][0] == "warning", (found, err.decode())
    assert found["source: lag"] == ("ok", "30 row(s) after the start (nothing committed yet)")
    await my_run(my, f"ALTER TABLE `{table}` ADD INDEX (ts, id)")
    await once(config)
    await my_run(my, f"INSERT INTO `{table}` VALUES (31, NOW(6) - INTERVAL 1 HOUR)")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "validate", "--json", "-c",
                                                   str(config), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    found = {c["check"]: (c["status"], c["detail"]) for c in json.loads(out or b"[]")}
    assert found["source: cursor index"][0] == "ok", (found, err.decode())
    assert found["source: lag"] == ("ok", "1 row(s) after the committed position")
