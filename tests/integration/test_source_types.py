"""uuid and JSON columns of database sources keep their types (issue 10): PostgreSQL's uuid, json,
jsonb and MariaDB's JSON and UUID reach a PostgreSQL destination as `uuid` and `jsonb` and a
MariaDB destination as UUID and JSON, each value equal to the source's (compared as jsonb / uuid by
the server: jsonb normalises whitespace, key order and repeated keys, which is what a jsonb column
means); a json value jsonb cannot hold is dead-lettered, never lost; a table whose columns are
`text` already keeps them; SQLite stores the text. The pure part (the marking, each dialect's
choice) is checked first, without a server."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from conduitd.core.arrowutil import concat_tables
from conduitd.core.schema import LOGICAL, logical_type, refine_types, with_logical
from conduitd.destinations.mysql.dialect import column_for as mysql_column
from conduitd.destinations.mysql.dialect import uuid_type
from conduitd.destinations.postgres.ddl import column_for as pg_column
from conduitd.destinations.sqlite.dialect import SqliteDialect
from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.decode import decode_copy
from conduitd.sources.tables.mysql_catalog import column as mysql_source_column
from conduitd.sources.tables.mysql_catalog import decode as mysql_decode
from conduitd.sources.tables.mysql_catalog import json_checked
from tests.conftest import require_or_skip
from tests.helpers.own_database import own_database

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("asyncmy")
import asyncmy

HOST, _, PORT = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306").partition(":")
PORT_NUMBER = int(PORT or 3306)
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# -- without a server ------------------------------------------------------------------------------

def test_source_columns_say_which_text_is_a_uuid_or_json() -> None:
    kinds = [SourceColumn("c", t, "U").logical for t in ("uuid", "json", "jsonb", "text")]
    assert kinds == ["uuid", "json", "json", ""]
    assert SourceColumn("c", "uuid[]", "A").logical == ""  # arrays are JSON text of their own kind
    assert mysql_source_column("c", "json", "json").logical == "json"
    assert mysql_source_column("c", "uuid", "uuid").logical == "uuid"
    assert mysql_source_column("c", "longtext", "longtext", json_checked=True).logical == "json"
    assert mysql_source_column("c", "longtext", "longtext").logical == ""
    checks = [("j", "json_valid(`j`)"), ("we`ird", "json_valid(`we``ird`)"), ("t", "json_valid(`t`) and 1")]
    assert json_checked(checks) == {"j", "we`ird"}


def test_decoded_reads_mark_the_columns_and_the_marks_choose_the_destination_types() -> None:
    data = b'1,0e0f3c5c-4d3e-4a8a-9c61-3f1e4b2a9d10,"{""a"": 1}",x\n'
    read = decode_copy(data, {"id": pa.int32(), "u": pa.string(), "j": pa.string(), "t": pa.string()}, [], ["id"],
                       "p", lambda _: {}, {"u": "uuid", "j": "json"})
    schema = read.rows.schema
    assert [logical_type(f) for f in schema] == [pa.int32(), pa.uuid(), pa.json_(), pa.string()]
    assert read.rows.column("u").to_pylist() == ["0e0f3c5c-4d3e-4a8a-9c61-3f1e4b2a9d10"]  # still text
    empty = decode_copy(b"", {"u": pa.string()}, [], [], "p", lambda _: {}, {"u": "uuid"})
    assert logical_type(empty.rows.schema.field("u")) == pa.uuid()
    rows, rejects = mysql_decode([("1", '{"a": 1}')], [mysql_source_column("id", "int", "int(11)"),
                                                       mysql_source_column("j", "json", "json")], "p", lambda _: {})
    assert not rejects and logical_type(rows.schema.field("j")) == pa.json_()
    # A batch of several reads keeps the marks; a timestamp-looking JSON text is not refined.
    marked = with_logical(pa.table({"j": ['"2026-11-30T00:00:00Z"'], "u": ["x"]}), {"j": "json", "u": "uuid"})
    joined = refine_types(concat_tables([marked, marked]))
    assert joined.schema.field("j").metadata == {LOGICAL: b"json"} and pa.types.is_string(joined.schema.field("j").type)
    assert logical_type(pa.field("t", pa.string())) == pa.string()  # Kafka, files: unmarked, unchanged


def test_each_dialect_gives_uuid_and_json_their_types() -> None:
    assert (pg_column("u", pa.uuid()).sql, pg_column("u", pa.uuid()).native) == ("uuid", "uuid")
    jsonb = pg_column("j", pa.json_())
    assert (jsonb.sql, jsonb.native, jsonb.json, jsonb.arrow) == ("jsonb", "jsonb", True, pa.string())
    assert mysql_column("u", pa.uuid(), "UUID").sql == "UUID" and mysql_column("u", pa.uuid()).sql == "CHAR(36)"
    assert (mysql_column("j", pa.json_()).sql, mysql_column("j", pa.json_()).json) == ("JSON", True)
    assert [uuid_type(v) for v in ("10.11.19-MariaDB-0+deb12u1", "10.6.18-MariaDB", "8.0.36", "10.7.1-MariaDB")] == [
        "UUID", "CHAR(36)", "CHAR(36)", "UUID"]
    sqlite = SqliteDialect.__new__(SqliteDialect)
    assert sqlite.column_for("u", pa.uuid()).sql == "TEXT" and sqlite.column_for("j", pa.json_()).sql == "TEXT"


# -- against the servers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source_dsn(pg_dsn: str) -> Iterator[str]:
    yield from own_database(pg_dsn, "conduitd_types")


@pytest.fixture
async def pg(source_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(source_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def schema(pg: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await pg.execute(f'CREATE SCHEMA "{name}"')
    yield name
    await pg.execute(f'DROP SCHEMA "{name}" CASCADE')


async def my_connect(database: str | None = None) -> Any:
    return await asyncmy.connect(host=HOST, port=PORT_NUMBER, user="root", password="", database=database,
                                 autocommit=True, charset="utf8mb4", connect_timeout=5)


async def my_run(conn: Any, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


@pytest.fixture
async def my_database() -> AsyncIterator[str]:
    name = f"conduitd_types_{uuid.uuid4().hex[:8]}"
    try:
        conn = await my_connect()
    except (OSError, TimeoutError, asyncmy.errors.MySQLError) as exc:
        require_or_skip(f"MariaDB/MySQL is not reachable at {HOST}:{PORT_NUMBER}: {exc}")
    try:
        await my_run(conn, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield name
        await my_run(conn, f"DROP DATABASE `{name}`")
    finally:
        conn.close()


def mysql_endpoint(name: str, database: str) -> str:
    return f"{{name: {name}, type: mysql, host: {HOST}, port: {PORT_NUMBER}, user: root, database: {database}}}"


def write_config(tmp_path: Path, source: str, destination: str, pipeline: str) -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(textwrap.dedent(f"""\
        sources:
          - {source}
        destinations:
          - {destination}
        resources:
        """) + textwrap.indent(textwrap.dedent(pipeline), "  "))
    return path


async def once(config: Path) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "--once", "-c", str(config),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()


PG_ROWS = [
    (1, "0e0f3c5c-4d3e-4a8a-9c61-3f1e4b2a9d10",
     '{"b": 1,  "a": {"nested": [1, 2.50, {"deep": null}]}, "b": 2}', '{"z": [1, "two", {"three": 3}], "a": true}'),
    (2, "00000000-0000-0000-0000-000000000000", '"héllo ☃ 𝄞 \\u00e9 \\"q\\""',
     '[123456789012345678901234567890.123456789012345678901, -1e400, 1E-7, 0.10]'),
    (3, "ffffffff-ffff-ffff-ffff-ffffffffffff", '[]', '{}'),
    (4, None, None, None),
    (5, "11111111-2222-4333-8444-555555555555", '{"bad": "\\u0000"}', '"x"'),
    (6, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 'null', 'null'),
    (7, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", '{\n  "line,\\nbreak": "a,b"\n}', '{"": "", "k": [[], {}]}'),
]


async def pg_source_table(pg: asyncpg.Connection, schema: str) -> None:
    await pg.execute(f'CREATE TABLE "{schema}".src (id int PRIMARY KEY, u uuid, j json, jb jsonb)')
    await pg.executemany(f'INSERT INTO "{schema}".src VALUES ($1, $2::text::uuid, $3::text::json, $4::text::jsonb)',
                         PG_ROWS)


async def test_postgres_uuid_json_jsonb_reach_postgres_as_uuid_and_jsonb_exactly(
        pg: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    await pg_source_table(pg, schema)
    config = write_config(tmp_path, f'{{name: db, type: postgres, dsn: "{source_dsn}", schema: {schema}}}',
                          f'{{name: wh, type: postgres, dsn: "{source_dsn}", schema: {schema}}}', f"""\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          quality_checks:
            - {{column: u, check: regex, pattern: "{UUID_PATTERN}", action: dlq}}
        """)
    await once(config)
    types = dict(await pg.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = $1 AND table_name = 'dst'", schema))
    assert (types["u"], types["j"], types["jb"]) == ("uuid", "jsonb", "jsonb")
    same = await pg.fetch(f"""SELECT s.id, s.u IS NOT DISTINCT FROM d.u AND s.jb IS NOT DISTINCT FROM d.jb
                                AND s.j::jsonb IS NOT DISTINCT FROM d.j AS equal
                              FROM "{schema}".src s JOIN "{schema}".dst d USING (id) ORDER BY s.id""")
    assert [(r["id"], r["equal"]) for r in same] == [(i, True) for i in (1, 2, 3, 4, 6, 7)]
    # json keeps repeated keys, jsonb the last one: what a jsonb column means.
    assert json.loads(await pg.fetchval(f'SELECT j::text FROM "{schema}".dst WHERE id = 1'))["b"] == 2
    # jsonb cannot hold \u0000: the row is dead-lettered with the server's reason and its exact text.
    dlq = await pg.fetch(f'SELECT reason, payload FROM "{schema}".dst_dlq')
    assert len(dlq) == 1 and "22P05" in dlq[0]["reason"]
    assert json.loads(dlq[0]["payload"])["j"] == PG_ROWS[4][2] and json.loads(dlq[0]["payload"])["id"] == 5


async def test_a_uuid_key_upserts(pg: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    await pg.execute(f'CREATE TABLE "{schema}".src (u uuid PRIMARY KEY, doc jsonb)')
    keys = [uuid.uuid4() for _ in range(3)]
    await pg.executemany(f'INSERT INTO "{schema}".src VALUES ($1, $2::text::jsonb)', [(k, '{"v": 1}') for k in keys])
    config = write_config(tmp_path, f'{{name: db, type: postgres, dsn: "{source_dsn}", schema: {schema}}}',
                          f'{{name: wh, type: postgres, dsn: "{source_dsn}", schema: {schema}}}', """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst, mode: upsert, unique_key: [u]}
        """)
    await once(config)
    await pg.execute(f"""UPDATE "{schema}".src SET doc = '{{"v": 2}}' WHERE u = $1""", keys[0])
    await once(config)
    got = {r["u"]: json.loads(r["doc"]) for r in await pg.fetch(f'SELECT u, doc FROM "{schema}".dst')}
    assert got == {keys[0]: {"v": 2}, keys[1]: {"v": 1}, keys[2]: {"v": 1}}
    assert await pg.fetchval("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                             "WHERE attrelid = $1::regclass AND attname = 'u'", f'"{schema}".dst') == "uuid"


async def test_existing_text_columns_keep_their_type_and_a_new_uuid_column_is_uuid(
        pg: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    await pg_source_table(pg, schema)
    await pg.execute(f'CREATE TABLE "{schema}".dst (id int PRIMARY KEY, u text, j text, jb text)')
    config = write_config(tmp_path, f'{{name: db, type: postgres, dsn: "{source_dsn}", schema: {schema}}}',
                          f'{{name: wh, type: postgres, dsn: "{source_dsn}", schema: {schema}}}', """\
        - name: copy
          source: db
          destination: wh
          source_table: src
          table: dst
          mode: upsert
          unique_key: [id]
          schema_evolution: {mode: auto, on_type_change: widen}
        """)
    await once(config)
    same = await pg.fetch(f"""SELECT s.id, s.u::text IS NOT DISTINCT FROM d.u AND s.j::text IS NOT DISTINCT FROM d.j
                                AND s.jb::text IS NOT DISTINCT FROM d.jb AS equal
                              FROM "{schema}".src s JOIN "{schema}".dst d USING (id) ORDER BY s.id""")
    assert [(r["id"], r["equal"]) for r in same] == [(i, True) for i in range(1, 8)]  # text holds \u0000 too
    await pg.execute(f'ALTER TABLE "{schema}".src ADD COLUMN u2 uuid')
    await pg.execute(f"UPDATE \"{schema}\".src SET u2 = 'c0ffee00-0000-4000-8000-000000000001' WHERE id = 1")
    await once(config)
    types = dict(await pg.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = $1 AND table_name = 'dst'", schema))
    assert types == {"id": "integer", "u": "text", "j": "text", "jb": "text", "u2": "uuid"}
    history = await pg.fetch(f'SELECT change, column_name FROM "{schema}".conduitd_schema_history')
    assert [(r["change"], r["column_name"]) for r in history] == [("add", "u2")]
    added = await pg.fetchval(f'SELECT u2 FROM "{schema}".dst WHERE id = 1')
    assert str(added) == "c0ffee00-0000-4000-8000-000000000001"


async def test_postgres_uuid_and_json_reach_mariadb_as_uuid_and_json(
        pg: asyncpg.Connection, source_dsn: str, schema: str, my_database: str, tmp_path: Path) -> None:
    await pg_source_table(pg, schema)
    # With the lease (the default): its claim runs in the MySQL destination, `%s` placeholders.
    config = write_config(tmp_path, f'{{name: db, type: postgres, dsn: "{source_dsn}", schema: {schema}}}',
                          mysql_endpoint("wh", my_database), """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst}
        """)
    await once(config)
    my = await my_connect(my_database)
    try:
        version = str((await my_run(my, "SELECT VERSION()"))[0][0])
        columns = {r[0]: r[1] for r in await my_run(
            my, "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = 'dst'", (my_database,))}
        checks = await my_run(my, "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                                  "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = 'dst'", (my_database,))
        got = {r[0]: r[1:] for r in await my_run(my, "SELECT id, u, j, jb FROM dst")}
    finally:
        my.close()
    assert columns["u"] == uuid_type(version).lower()
    assert json_checked(checks) == {"j", "jb"}  # MariaDB's JSON: LONGTEXT with its json_valid check
    source = {r["id"]: (r["u"], r["j"], r["jb"]) for r in await pg.fetch(
        f'SELECT id, u::text AS u, j::text AS j, jb::text AS jb FROM "{schema}".src')}
    assert got == source  # the JSON texts exactly as the source writes them, \u0000 included


async def test_mariadb_json_and_uuid_reach_postgres_as_jsonb_and_uuid(
        pg: asyncpg.Connection, source_dsn: str, schema: str, my_database: str, tmp_path: Path) -> None:
    values = [(1, '{"b": 1, "a": [1, 2.50, "☃ 𝄞"], "big": 123456789012345678901234567890.5}',
               "0e0f3c5c-4d3e-4a8a-9c61-3f1e4b2a9d10", "plain", "[1]"),
              (2, "  [ ]  ", "00000000-0000-0000-0000-000000000000", '{"a": 1}', "{}"),
              (3, "null", None, None, None),
              (4, None, "ffffffff-ffff-ffff-ffff-ffffffffffff", "", "[]"),
              (5, '"\\u0000"', "11111111-2222-4333-8444-555555555555", "x", "1")]
    my = await my_connect(my_database)
    try:
        await my_run(my, "CREATE TABLE src (id INT PRIMARY KEY, j JSON, u UUID, t LONGTEXT, "
                         "c LONGTEXT CHECK (json_valid(c) AND length(c) < 100))")
        for row in values:
            await my_run(my, "INSERT INTO src VALUES (%s, %s, %s, %s, %s)", row)
        stored = {r[0]: r[1] for r in await my_run(my, "SELECT id, j FROM src")}
    finally:
        my.close()
    config = write_config(tmp_path, mysql_endpoint("db", my_database),
                          f'{{name: wh, type: postgres, dsn: "{source_dsn}", schema: {schema}}}', """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst}
        """)
    await once(config)
    types = dict(await pg.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = $1 AND table_name = 'dst'", schema))
    assert types == {"id": "bigint", "j": "jsonb", "u": "uuid", "t": "text", "c": "text"}
    for id_, _, u, t, c in values[:4]:
        equal = await pg.fetchval(f"""SELECT j IS NOT DISTINCT FROM $2::text::jsonb
                                        AND u IS NOT DISTINCT FROM $3::text::uuid AND t IS NOT DISTINCT FROM $4
                                        AND c IS NOT DISTINCT FROM $5 FROM "{schema}".dst WHERE id = $1""",
                                  id_, stored[id_], u, t, c)
        assert equal is True, id_
    dlq = await pg.fetch(f'SELECT reason, payload FROM "{schema}".dst_dlq')
    assert len(dlq) == 1 and "22P05" in dlq[0]["reason"] and json.loads(dlq[0]["payload"])["j"] == stored[5]


async def test_sqlite_stores_uuid_and_json_as_text(
        pg: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    await pg_source_table(pg, schema)
    path = tmp_path / "wh.db"
    config = write_config(tmp_path, f'{{name: db, type: postgres, dsn: "{source_dsn}", schema: {schema}}}',
                          f'{{name: wh, type: sqlite, path: "{path}"}}', """\
        - {name: copy, source: db, destination: wh, source_table: src, table: dst}
        """)
    await once(config)
    with sqlite3.connect(path) as db:
        declared = {r[1]: r[2] for r in db.execute("PRAGMA table_info(dst)")}
        got = {r[0]: r[1:] for r in db.execute("SELECT id, u, j, jb FROM dst")}
    assert (declared["u"], declared["j"], declared["jb"]) == ("TEXT", "TEXT", "TEXT")
    source = {r["id"]: (r["u"], r["j"], r["jb"]) for r in await pg.fetch(
        f'SELECT id, u::text AS u, j::text AS j, jb::text AS jb FROM "{schema}".src')}
    assert got == source
