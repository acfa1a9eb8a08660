"""The PostgreSQL table source against the real server (issue 10): late commits and groups of
equal cursor values are never lost, types come from the catalog, whole-table reads, clear errors."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers.own_database import own_database


@pytest.fixture(scope="module")
def source_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of this module's own: the late-commit bound looks at every write transaction of
    its database, so other tests' transactions (a parallel run) must not be in it."""
    yield from own_database(pg_dsn, "conduitd_src")


@pytest.fixture
async def pg(source_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(source_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def pg_schema(pg: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await pg.execute(f'CREATE SCHEMA "{name}"')
    yield name
    await pg.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def db_dsn(source_dsn: str) -> str:
    return source_dsn


def write_config(tmp_path: Path, dsn: str, schema: str, pipeline: str, *, source: str = "") -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(textwrap.dedent(f"""\
        sources:
          - {{name: db, type: postgres, dsn: "{dsn}", schema: {schema}{source}}}
        destinations:
          - {{name: wh, type: postgres, dsn: "{dsn}", schema: {schema}}}
        resources:
        """) + textwrap.indent(textwrap.dedent(pipeline), "  "))
    return path


async def run(config: Path) -> tuple[int, str]:
    """`conduitd --once -c config` as a process: (exit code, standard error)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "--once", "-c", str(config),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, err.decode()


async def once(config: Path) -> int:
    code, err = await run(config)
    assert code == 0, err
    return code


async def rows(pg: asyncpg.Connection, schema: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    return [dict(r) for r in await pg.fetch(f'SELECT * FROM "{schema}"."{table}" ORDER BY {order}')]


async def runs_until(pg: asyncpg.Connection, config: Path, schema: str, wanted: list[tuple[int, str]]) -> None:
    """`--once` runs until the table `dst` holds `wanted` as (id, v). A sequential or xid cursor
    waits for every write transaction running on the server (any database: xids are server-wide),
    a --once run for 2 s at most, then leaves the rest to the next run: on this shared server
    another test's transaction may hold a run back, never make it read what it must not."""
    got: list[tuple[int, str]] = []
    for _ in range(30):
        assert await once(config) == 0
        if await pg.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".dst'):
            got = [(r["id"], r["v"]) for r in await rows(pg, schema, "dst")]
        if got == wanted:
            return
    raise AssertionError(f"after 30 runs the table holds {got}, not {wanted}")


async def test_a_late_commit_is_read_once_it_commits_timestamp_cursor(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), '
                     f'v text)')
    await pg.execute(f"INSERT INTO \"{pg_schema}\".src VALUES (1, now() - interval '1 hour', 'before')")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          incremental: {column: ts}
        """)
    late = await asyncpg.connect(db_dsn)
    try:
        tx = late.transaction()
        await tx.start()
        await late.execute(f"INSERT INTO \"{pg_schema}\".src (id, v) VALUES (2, 'late')")  # ts: its start
        await pg.execute(f"INSERT INTO \"{pg_schema}\".src (id, v) VALUES (3, 'early')")  # commits first
        assert await once(config) == 0
        # A naive `ts > watermark` poller reads 3 here and never 2; the bound held the read back.
        assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]
        await tx.commit()
    finally:
        await late.close()
    assert await once(config) == 0
    assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "dst")] == [(1, "before"), (2, "late"), (3, "early")]
    assert await once(config) == 0
    assert len(await rows(pg, pg_schema, "dst")) == 3


async def test_a_late_commit_is_read_once_it_commits_sequential_cursor(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id bigserial PRIMARY KEY, v text)')
    await pg.execute(f"INSERT INTO \"{pg_schema}\".src (v) VALUES ('first')")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst, incremental_column: id}
        """)

    await runs_until(pg, config, pg_schema, [(1, "first")])
    late = await asyncpg.connect(db_dsn)
    try:
        tx = late.transaction()
        await tx.start()
        await late.execute(f"INSERT INTO \"{pg_schema}\".src (v) VALUES ('late')")  # takes id 2
        await pg.execute(f"INSERT INTO \"{pg_schema}\".src (v) VALUES ('early')")  # id 3, committed first
        assert await once(config) == 0
        assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]  # 3 waits for 2's transaction
        await tx.commit()
    finally:
        await late.close()
    await runs_until(pg, config, pg_schema, [(1, "first"), (2, "late"), (3, "early")])


async def test_five_thousand_rows_of_one_timestamp_arrive_once_in_batches_of_a_thousand(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, ts timestamptz NOT NULL)')
    await pg.execute(f"INSERT INTO \"{pg_schema}\".src SELECT g, now() FROM generate_series(1, 5000) g")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          incremental: {column: ts, strategy: timestamp}
          batch: {max_rows: 1000}
        """)
    assert await once(config) == 0
    got = [r["id"] for r in await rows(pg, pg_schema, "dst")]
    assert got == list(range(1, 5001))
    checkpoints = await pg.fetch(f'SELECT position FROM "{pg_schema}".conduitd_checkpoints')
    assert len(checkpoints) == 1 and '"key": ["5000"]' in checkpoints[0]["position"].replace('":[', '": [')


async def test_catalog_types_reach_the_destination_exactly(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    s = f'"{pg_schema}"'
    await pg.execute(f"CREATE TYPE {s}.mood AS ENUM ('sad', 'ok')")
    await pg.execute(f"""CREATE TABLE {s}.src (id int PRIMARY KEY, price numeric(12,2), big numeric(60,10),
        at timestamptz, local timestamp, day date, uid uuid, doc jsonb, raw bytea, feeling {s}.mood,
        tags int[], note text, flag boolean, ratio double precision)""")
    uid = uuid.uuid4()
    await pg.execute(f"""INSERT INTO {s}.src VALUES
        (1, 12345.67, 12345678901234567890123456789012345678901234567890.0123456789,
         '2026-11-30 04:05:06.123456+02', '2026-11-30 04:05:06.5', '2026-11-30', '{uid}', '{{"a": [1, 2]}}',
         '\\x00ff10', 'ok', '{{1,2,3}}', E'two\\nlines, "quoted"', true, 0.1),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', false, NULL),
        (3, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'nan price', NULL, NULL)""")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst}
        """)
    assert await once(config) == 0
    got = await rows(pg, pg_schema, "dst")
    assert [r["id"] for r in got] == [1, 2]
    first, second = got
    assert first["price"] == Decimal("12345.67")
    # Beyond 38 digits the PostgreSQL destination keeps the exact text (a known limit of its dialect).
    assert Decimal(first["big"]) == Decimal("12345678901234567890123456789012345678901234567890.0123456789")
    assert first["at"].isoformat() == "2026-11-30T02:05:06.123456+00:00"
    assert first["local"].isoformat() == "2026-11-30T04:05:06.500000"
    assert str(first["day"]) == "2026-11-30"
    assert first["uid"] == uid  # a uuid column (tests/integration/test_source_types.py)
    assert first["raw"] == b"\x00\xff\x10"
    assert (first["feeling"], first["tags"], first["note"], first["flag"], first["ratio"]) == (
        "ok", "[1,2,3]", 'two\nlines, "quoted"', True, 0.1)
    assert first["doc"] == '{"a": [1, 2]}'
    assert second["note"] == "" and second["price"] is None and second["flag"] is False
    types = dict(await pg.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = $1 AND table_name = 'dst'", pg_schema))
    assert types["price"] == "numeric" and types["at"] == "timestamp with time zone"
    assert types["local"] == "timestamp without time zone" and types["raw"] == "bytea"
    assert types["uid"] == "uuid" and types["doc"] == "jsonb" and types["feeling"] == "text"
    dlq = await pg.fetch(f'SELECT rule, reason, payload FROM {s}.dst_dlq')
    assert len(dlq) == 1 and dlq[0]["rule"] == "decode" and "'NaN'" in dlq[0]["reason"]
    assert '"nan price"' in dlq[0]["payload"]


async def test_a_whole_table_is_read_once_per_run_and_upsert_absorbs_the_rereads(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (k text, n int, v text, PRIMARY KEY (k, n))')
    await pg.execute(f"INSERT INTO \"{pg_schema}\".src SELECT 'k' || (g % 7), g, 'v' FROM generate_series(1, 2500) g")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          mode: upsert
          unique_key: [k, n]
          batch: {max_rows: 1000}
        """)
    assert await once(config) == 0
    assert len(await rows(pg, pg_schema, "dst", order="k, n")) == 2500
    await pg.execute(f"UPDATE \"{pg_schema}\".src SET v = 'w' WHERE n = 7")
    assert await once(config) == 0
    got = await rows(pg, pg_schema, "dst", order="k, n")
    assert len(got) == 2500 and [r["v"] for r in got if r["n"] == 7] == ["w"]


async def test_a_full_refresh_from_a_table_replaces_the_rows_each_run_even_with_a_cursor(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    """`mode: full_refresh` from a table source: each `--once` run reads the whole table (the
    cursor's checkpoint is reset by the swap), so rows deleted at the source leave the copy."""
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, v text, '
                     "at timestamptz NOT NULL DEFAULT now())")
    await pg.execute(f"INSERT INTO \"{pg_schema}\".src (id, v) SELECT g, 'a' FROM generate_series(1, 2500) g")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          mode: full_refresh
          incremental: {column: at}
          batch: {max_rows: 1000}
        """)
    assert await once(config) == 0
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == list(range(1, 2501))
    await pg.execute(f'DELETE FROM "{pg_schema}".src WHERE id <= 1000')
    await pg.execute(f"UPDATE \"{pg_schema}\".src SET v = 'b' WHERE id = 2000")
    assert await once(config) == 0
    got = await rows(pg, pg_schema, "dst")
    assert [r["id"] for r in got] == list(range(1001, 2501))
    assert [r["v"] for r in got if r["id"] == 2000] == ["b"]
    assert await pg.fetchval(f"SELECT count(*) FROM \"{pg_schema}\".conduitd_checkpoints "
                             "WHERE pipeline = 'copy'") == 0


async def test_a_query_with_a_unique_key_is_read_incrementally(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, amount int)')
    await pg.execute(f'INSERT INTO "{pg_schema}".src SELECT g, g * 10 FROM generate_series(1, 30) g')
    config = write_config(tmp_path, db_dsn, pg_schema, f"""\
        - name: copy
          source: db
          destination: wh
          query: 'SELECT id, amount * 2 AS doubled FROM "{pg_schema}".src WHERE id % 3 = 0;'
          unique_key: [id]
          incremental: {{column: id, strategy: cursor}}
          table: dst
        """)
    assert await once(config) == 0
    assert [(r["id"], r["doubled"]) for r in await rows(pg, pg_schema, "dst")] == [(i, i * 20) for i in range(3, 31, 3)]


@pytest.mark.parametrize(("pipeline", "message"), [
    ("- {name: copy, source: db, destination: wh, source_table: nowhere}", "source table"),
    ("- {name: copy, source: db, destination: wh, source_table: nokey}", "has no primary key"),
    ("- {name: copy, source: db, destination: wh, source_table: nokey, unique_key: [id], incremental_column: nah}",
     "incremental column 'nah' is not in the source"),
    ("- {name: copy, source: db, destination: wh, source_table: nokey, unique_key: [id], incremental_column: v}",
     "set incremental.strategy"),
])
async def test_what_cannot_be_read_is_a_config_error(pg: asyncpg.Connection, db_dsn: str, pg_schema: str,
                                                      tmp_path: Path, pipeline: str, message: str) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".nokey (id int, v text)')
    config = write_config(tmp_path, db_dsn, pg_schema, pipeline + "\n")
    code, err = await run(config)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err


async def test_a_wrong_password_is_refused_without_showing_it(db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_dsn, pg_schema, "- {name: copy, source: db, destination: wh, "
                          "source_table: src}\n", source=", password: 'Sw0rdfish-secret'")
    text = config.read_text().replace(f'dsn: "{db_dsn}", schema: {pg_schema}, password',
                                      f'host: 127.0.0.1, database: conduitd_test, user: nobody_here, '
                                      f'schema: {pg_schema}, password', 1)
    config.write_text(text)
    code, err = await run(config)
    assert code in (2, 5), err
    assert "Sw0rdfish-secret" not in err and "nobody_here" in err


async def validate(config: Path) -> tuple[int, list[dict[str, Any]]]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "validate", "--json", "-c",
                                                   str(config), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert out, err.decode()
    return process.returncode or 0, json.loads(out)


async def test_validate_reports_the_cursor_index_the_guard_and_the_lag(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, ts timestamptz NOT NULL)')
    src = f'"{pg_schema}".src'
    await pg.execute(f"INSERT INTO {src} SELECT g, now() - interval '1 day' FROM generate_series(1, 40) g")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst, incremental: {column: ts},
           batch: {max_rows: 25}}
        """)
    code, checks = await validate(config)
    found = {c["check"]: (c["status"], c["detail"]) for c in checks}
    assert code == 0, checks
    status, detail = found["source: cursor index"]
    assert status == "warning" and "no index starts with 'ts'" in detail
    assert found["source: late commits"] == ("ok", "the account sees every session's transactions")
    assert found["source: lag"] == ("ok", "40 row(s) after the start (nothing committed yet)")
    await pg.execute(f'CREATE INDEX ON "{pg_schema}".src (ts, id)')
    await once(config)
    await pg.execute(f"INSERT INTO {src} SELECT g, now() - interval '1 hour' FROM generate_series(41, 43) g")
    code, checks = await validate(config)
    found = {c["check"]: (c["status"], c["detail"]) for c in checks}
    assert found["source: cursor index"][0] == "ok"
    assert found["source: lag"] == ("ok", "3 row(s) after the committed position")


async def conduitd_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_exact_mode_after_cdc_setup_reads_a_late_commit_and_an_update_once(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, at timestamptz DEFAULT now())")
    await pg.execute(f"INSERT INTO {src} (id, v) VALUES (1, 'old')")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst, mode: upsert, unique_key: [id],
           incremental: {column: conduitd_xid}}
        """)
    code, out, err = await conduitd_cli("cdc", "setup", "-c", str(config))
    assert code == 0, err
    assert "ADD COLUMN IF NOT EXISTS \"conduitd_xid\" xid8" in out and "BEFORE UPDATE" in out
    assert await pg.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND "
                             "column_name = 'conduitd_xid'", pg_schema) == 0  # printed, not applied
    code, out, err = await conduitd_cli("cdc", "setup", "-c", str(config), "--apply")
    assert code == 0, err
    code, out, err = await conduitd_cli("cdc", "setup", "-c", str(config), "--apply")  # again: harmless
    assert code == 0, err
    await runs_until(pg, config, pg_schema, [(1, "old")])
    late = await asyncpg.connect(db_dsn)
    try:
        tx = late.transaction()
        await tx.start()
        await late.execute(f"INSERT INTO {src} (id, v, at) VALUES (2, 'late', now() - interval '1 day')")
        await pg.execute(f"INSERT INTO {src} (id, v) VALUES (3, 'early')")
        await pg.execute(f"UPDATE {src} SET v = 'updated' WHERE id = 1")
        await once(config)
        assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "dst")] == [(1, "old")]  # 3, the update: 2's xid
        await tx.commit()
    finally:
        await late.close()
    await runs_until(pg, config, pg_schema, [(1, "updated"), (2, "late"), (3, "early")])


async def test_lookback_waits_for_rows_whose_application_timestamps_arrive_late(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, ts timestamptz NOT NULL)")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst,
           incremental: {column: ts, lookback_seconds: 60}}
        """)
    await pg.execute(f"INSERT INTO {src} VALUES (1, now() - interval '100 s'), (2, now() - interval '30 s')")
    await once(config)
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1]  # 2 is younger than the lookback
    # A row the application stamped 90 s back commits only now: a poller that had read 2 would skip it.
    await pg.execute(f"INSERT INTO {src} VALUES (3, now() - interval '90 s')")
    await once(config)
    assert [r["id"] for r in await rows(pg, pg_schema, "dst")] == [1, 3]
