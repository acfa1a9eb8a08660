"""Positions of the PostgreSQL table source (issue 10): a row's cursor and key texts come from the
text COPY writes of the row itself (no hidden `::text` columns for the types whose output is their
text cast), and each position is exactly the server's `::text` of the row (so checkpoints written
before keep working) and casts back with `($n::text)::<type>` to the row it came from. Edge values:
microseconds, years 1 and 9999, negative and extreme ids, unicode, trailing spaces, quotes and
newlines inside a key; types kept as hidden text columns (character(n), boolean, bytea); values
Arrow cannot hold (infinity, BC) are rejects whose positions are still exact. Each read is one row
(or two), so every row is once the last of a read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from conduitd.config import PipelineConfig
from conduitd.sources.tables.cursor import Plan, next_pass
from conduitd.sources.tables.poller import Read
from conduitd.sources.tables.postgres import PostgresReader
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig
from conduitd.sources.tables.postgres_sql import hidden_columns
from tests.helpers.own_database import own_database

EDGE_VALUES: dict[str, list[str]] = {
    "bigint": ["-9223372036854775808", "-42", "0", "7", "9223372036854775807"],
    "integer": ["-2147483648", "-1", "2147483647"],
    "smallint": ["-32768", "32767"],
    "numeric(30,6)": ["-1.500000", "0.000001", "123456789012345678901234.123456"],
    "numeric": ["-1.50", "0", "1e-20", "3.14159265358979323846264338327950288419716939937510"],
    "text": ["", " ", "a", "a ", "a  ", "é", "日本語", "emoji 🎉", 'quote "x" ""', "comma, here", "new\nline",
             "two\n\nnewlines \"q\n\"", "cr\rx", "back\\slash", "NULL", "\\N", "t", "\\."],
    "character varying(12)": ["x", "x ", "x   ", "ünï cödé  "],
    "timestamp with time zone": ["0001-01-01 00:00:00+00", "0001-01-01 00:00:00.000001+00",
                                 "1970-01-01 00:00:00+00", "2024-02-29 12:34:56.123456+00",
                                 "2024-02-29 12:34:56.1+00", "2024-03-01 00:00:00.999999+00",
                                 "9999-12-31 23:59:59.999999+00"],
    "timestamp without time zone": ["0001-01-01 00:00:00", "0001-01-01 00:00:00.000001",
                                    "2024-02-29 12:34:56.123456", "9999-12-31 23:59:59.999999"],
    "timestamp(3) with time zone": ["2024-01-01 00:00:00.123+00", "2024-01-01 00:00:00.124+00"],
    "date": ["0001-01-01", "2000-02-29", "9999-12-31"],
    "uuid": [str(uuid.UUID(int=0)), "0e0f3c5c-4d3e-4a8a-9c61-3f1e4b2a9d10", str(uuid.UUID(int=2**128 - 1))],
    "character(4)": ["a", "ab", "ab c", "é"],
    "boolean": ["false", "true"],
    "bytea": ["\\x", "\\x00", "\\x0a22", "\\xff"],
}
"""Values per key type, in the server's text form for the type (how it comes back is checked)."""
HIDDEN = {"character(4)", "boolean", "bytea"}
"""Types whose COPY text is not their `::text` cast: their positions come from hidden columns."""


@pytest.fixture(scope="module")
def source_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of this module's own (the late-commit bound looks at all its transactions)."""
    yield from own_database(pg_dsn, "conduitd_pos")


@pytest.fixture
async def pg(source_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(source_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def schema(pg: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"p_{uuid.uuid4().hex[:10]}"
    await pg.execute(f'CREATE SCHEMA "{name}"')
    yield name
    await pg.execute(f'DROP SCHEMA "{name}" CASCADE')


def reader(dsn: str, schema: str, **pipeline: Any) -> PostgresReader:
    config = PostgresSourceConfig.model_validate({"name": "db", "type": "postgres", "dsn": dsn, "schema": schema})
    return PostgresReader(config, PipelineConfig.model_validate(
        {"name": "p", "source": "db", "destination": "wh", "source_table": "t", **pipeline}))


async def walk(source: PostgresReader, plan: Plan, limit: int,
               start: dict[str, Any] | None = None) -> list[tuple[Read, dict[str, Any]]]:
    """Every read from `start` until one comes back short, each with the position after it (as the
    poller makes it)."""
    reads: list[tuple[Read, dict[str, Any]]] = []
    position = start
    for _ in range(100):  # a position that does not move on would read forever
        reading = next_pass(position) if plan.cursor is None else position
        read = await source.read(plan, reading, limit, "t")
        assert read is not None
        if read.last is None:
            return reads
        position = plan.position_after(read.last, reading)
        reads.append((read, position))
        if read.count < limit:
            return reads
    raise AssertionError(f"the reads do not end: {[p for _, p in reads[-3:]]}")


async def server_texts(pg: asyncpg.Connection, schema: str, order: str, *columns: str) -> list[list[str]]:
    texts = ", ".join(f"(t.{c})::text AS text_{i}" for i, c in enumerate(columns))
    rows = await pg.fetch(f'SELECT {texts} FROM "{schema}".t AS t ORDER BY {order}')
    return [list(r) for r in rows]


async def casts_back(pg: asyncpg.Connection, schema: str, column: str, sql_type: str, text: str) -> int:
    """How many rows the position text finds, cast back as the keyset SQL casts it."""
    return int(await pg.fetchval(f'SELECT count(*) FROM "{schema}".t WHERE {column} = ($1::text)::{sql_type}', text))


@pytest.mark.parametrize("sql_type", list(EDGE_VALUES))
async def test_a_whole_table_key_position_is_the_rows_own_server_text(
        pg: asyncpg.Connection, source_dsn: str, schema: str, sql_type: str) -> None:
    await pg.execute(f'CREATE TABLE "{schema}".t (k {sql_type} PRIMARY KEY, n integer)')
    await pg.executemany(f'INSERT INTO "{schema}".t VALUES (($1::text)::{sql_type}, $2)',
                         [(v, i) for i, v in enumerate(EDGE_VALUES[sql_type])])
    expected = await server_texts(pg, schema, "t.k", "k")
    source = reader(source_dsn, schema)
    await source.connect()
    try:
        plan = await source.plan()
        assert bool(hidden_columns(plan)) == (sql_type in HIDDEN)
        reads = await walk(source, plan, 1)
    finally:
        await source.close()
    assert [position["key"] for _, position in reads] == expected
    assert sorted(n for read, _ in reads for n in read.rows.column("n").to_pylist()) == \
        list(range(len(EDGE_VALUES[sql_type])))
    for _, position in reads:
        assert await casts_back(pg, schema, "k", sql_type, position["key"][0]) == 1, position


@pytest.mark.parametrize("sql_type", ["timestamp with time zone", "timestamp without time zone", "date", "text",
                                      "bigint", "uuid", "numeric", "character(4)"])
async def test_a_cursor_position_is_the_rows_own_server_text_and_resumes_exactly(
        pg: asyncpg.Connection, source_dsn: str, schema: str, sql_type: str) -> None:
    """Cursor values with ties (two rows a value, told apart by the key), read one and two rows at a
    time: every row once, each position the server's text, each cast back to its row."""
    values = EDGE_VALUES[sql_type]
    await pg.execute(f'CREATE TABLE "{schema}".t (id bigint PRIMARY KEY, c {sql_type} NOT NULL, payload text)')
    ids = [(sign * (i + 1), v) for i, v in enumerate(values) for sign in (1, -1)]
    await pg.executemany(f'INSERT INTO "{schema}".t VALUES ($1, ($2::text)::{sql_type}, $3)',
                         [(i, v, f"row {i}") for i, v in ids])
    expected = [{"cursor": c, "key": [k], "on": ["c", "id"]}
                for c, k in await server_texts(pg, schema, "t.c, t.id", "c", "id")]
    for limit in (1, 2):
        source = reader(source_dsn, schema, incremental={"column": "c", "strategy": "cursor"})
        await source.connect()
        try:
            plan = await source.plan()
            reads = await walk(source, plan, limit)
        finally:
            await source.close()
        assert [position for _, position in reads] == expected[limit - 1::limit] + (
            [expected[-1]] if len(expected) % limit else [])
        read_ids = [i for read, _ in reads for i in read.rows.column("id").to_pylist()]
        assert sorted(read_ids) == sorted(i for i, _ in ids)
    for position in expected:
        found = await pg.fetchval(f'SELECT count(*) FROM "{schema}".t WHERE (c, id) = (($1::text)::{sql_type}, '
                                  f"($2::text)::bigint)", position["cursor"], position["key"][0])
        assert found == 1, position


async def test_a_checkpoint_of_the_hidden_column_format_resumes_where_it_stood(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    """A position written before (the hidden `::text` columns) resumes on the row after it."""
    await pg.execute(f'CREATE TABLE "{schema}".t (id integer PRIMARY KEY, at timestamptz NOT NULL)')
    await pg.execute(f'INSERT INTO "{schema}".t SELECT g, timestamptz \'2024-01-01 00:00:00+00\' + g * interval '
                     f"'1.000001 s' FROM generate_series(1, 10) g")
    (old_cursor, old_key), = await pg.fetch(f'SELECT (at)::text, (id)::text FROM "{schema}".t WHERE id = 4')
    source = reader(source_dsn, schema, incremental={"column": "at", "strategy": "cursor"})
    await source.connect()
    try:
        plan = await source.plan()
        assert not hidden_columns(plan)
        reads = await walk(source, plan, 3, {"cursor": old_cursor, "key": [old_key], "lease": 1})
    finally:
        await source.close()
    assert [i for read, _ in reads for i in read.rows.column("id").to_pylist()] == [5, 6, 7, 8, 9, 10]
    assert reads[0][1] == {"cursor": "2024-01-01 00:00:07.000007+00", "key": ["7"], "on": ["at", "id"]}


async def test_values_arrow_cannot_hold_are_rejects_with_exact_positions_and_the_read_goes_on(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    await pg.execute(f'CREATE TABLE "{schema}".t (id integer PRIMARY KEY, at timestamptz NOT NULL)')
    await pg.executemany(f'INSERT INTO "{schema}".t VALUES ($1, ($2::text)::timestamptz)', [
        (1, "-infinity"), (2, "0044-03-15 12:00:00+00 BC"), (3, "0001-01-01 00:00:00+00"),
        (4, "2024-06-01 00:00:00.5+00"), (5, "infinity")])
    source = reader(source_dsn, schema, incremental={"column": "at", "strategy": "cursor"})
    await source.connect()
    try:
        plan = await source.plan()
        everything = await walk(source, plan, 10)
        one_by_one = await walk(source, plan, 1)
    finally:
        await source.close()
    (read, position), = everything

    def at(cursor: str, key: str) -> dict[str, Any]:
        return {"cursor": cursor, "key": [key], "on": ["at", "id"]}

    assert read.rows.column("id").to_pylist() == [3, 4]
    assert [r.position for r in read.rejects] == [
        at("-infinity", "1"), at("0044-03-15 12:00:00+00 BC", "2"), at("infinity", "5")]
    assert position == at("infinity", "5")
    assert [p for _, p in one_by_one] == [
        at("-infinity", "1"), at("0044-03-15 12:00:00+00 BC", "2"), at("0001-01-01 00:00:00+00", "3"),
        at("2024-06-01 00:00:00.5+00", "4"), at("infinity", "5")]


async def test_a_query_key_of_a_type_without_its_own_text_keeps_a_hidden_column(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    """A query's key of character(n) (a query's columns have no length) reads through its hidden
    text, cast back to `bpchar`, not `character(1)`, which would cut 'b b' to 'b'."""
    await pg.execute(f'CREATE TABLE "{schema}".t (code character(3) PRIMARY KEY, n integer)')
    await pg.execute(f"INSERT INTO \"{schema}\".t VALUES ('a', 1), ('b b', 2), ('c', 3)")
    source = reader(source_dsn, schema, source_table=None, query=f'SELECT code, n FROM "{schema}".t',
                    unique_key=["code"])
    await source.connect()
    try:
        plan = await source.plan()
        reads = await walk(source, plan, 1)
    finally:
        await source.close()
    assert [p["key"] for _, p in reads] == [["a"], ["b b"], ["c"]]
    assert [read.rows.column("code").to_pylist() for read, _ in reads] == [["a  "], ["b b"], ["c  "]]


# -- reading ahead: the next chunk is copied while this one is decoded ------------------------------


async def numbered(pg: asyncpg.Connection, schema: str, count: int, ts: str = "now() - interval '1 hour'") -> None:
    await pg.execute(f'CREATE TABLE "{schema}".t (id integer PRIMARY KEY, ts timestamptz NOT NULL, v text)')
    await pg.execute(f'INSERT INTO "{schema}".t SELECT g, {ts} + g * interval \'1 ms\', repeat(\'x\', 50) '
                     f"FROM generate_series(1, {count}) g")


def ids(read: Read | None) -> list[int]:
    assert read is not None
    return [int(i) for i in read.rows.column("id").to_pylist()]


async def test_a_read_from_another_position_drops_what_was_read_ahead(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    """A resync or a moved lease reads from elsewhere: the chunk read ahead is dropped, the read
    starts where it is told; the position's lease stamp does not make it another position."""
    await numbered(pg, schema, 7)
    source = reader(source_dsn, schema, incremental={"column": "ts", "strategy": "timestamp"})
    await source.connect()
    try:
        plan = await source.plan()
        first = await source.read(plan, None, 2, "t")
        assert first is not None and first.last is not None
        assert ids(first) == [1, 2]
        again = await source.read(plan, None, 2, "t")  # back to the start (read ahead: from 2)
        assert again is not None and again.last is not None and ids(again) == [1, 2]
        after_two = {**plan.position_after(again.last, None), "lease": 7}
        assert ids(await source.read(plan, after_two, 2, "t")) == [3, 4]
        assert ids(await source.read(plan, after_two, 3, "t")) == [3, 4, 5]  # another limit: read again
        assert ids(await source.read(plan, {"cursor": first.last[0], "key": ["1"]}, 10, "t")) == [2, 3, 4, 5, 6, 7]
    finally:
        await source.close()


async def test_closing_while_a_chunk_is_read_ahead_cancels_it_and_a_new_connection_reads_on(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    await numbered(pg, schema, 120_000)
    source = reader(source_dsn, schema, incremental={"column": "ts", "strategy": "timestamp"})
    await source.connect()
    plan = await source.plan()
    first = await source.read(plan, None, 50_000, "t")
    assert first is not None and first.last is not None
    await source.close()  # the next 50,000 rows are being copied now (or are copied)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("read ahead")] == []
    await source.connect()
    try:
        position = plan.position_after(first.last, None)
        second = await source.read(plan, position, 50_000, "t")
        assert second is not None and ids(second)[:1] == [50_001] and second.count == 50_000
    finally:
        await source.close()


async def test_a_connection_lost_under_a_read_ahead_is_a_lost_connection_and_nothing_is_skipped(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    """The server ends the session while a chunk is read ahead (or after): the next reads fail as a
    lost connection (retried by the poller), and reading on from the last position returned, on a
    new connection, reads every row once."""
    await numbered(pg, schema, 30_000)
    source = reader(source_dsn, schema, incremental={"column": "ts", "strategy": "timestamp"})
    await source.connect()
    plan = await source.plan()
    seen: list[int] = []
    position: dict[str, Any] | None = None
    lost = 0
    try:
        while True:
            try:
                read = await source.read(plan, position, 10_000, "t")
            except source.errors as exc:
                assert source.lost(exc), exc
                lost += 1
                await source.connect()
                continue
            assert read is not None
            seen += ids(read)
            if read.last is None:
                break
            position = plan.position_after(read.last, position)
            if lost == 0 and len(seen) == 10_000:
                await pg.execute("SELECT pg_terminate_backend($1)", source.conn.get_server_pid())
    finally:
        await source.close()
    assert lost == 1
    assert seen == list(range(1, 30_001))


async def test_a_chunk_read_ahead_before_a_late_commit_does_not_pass_it(
        pg: asyncpg.Connection, source_dsn: str, schema: str) -> None:
    """The chunk read ahead takes its own bound when it is copied: a transaction running then holds
    it back (rows after its start wait), and the row it writes is read once it commits."""
    await numbered(pg, schema, 4)
    late = await asyncpg.connect(source_dsn)
    try:
        transaction = late.transaction()
        await transaction.start()
        await late.execute(f"INSERT INTO \"{schema}\".t VALUES (5, now(), 'late')")  # ts: its start
        await pg.execute(f"INSERT INTO \"{schema}\".t VALUES (6, now(), 'early')")  # commits first
        source = reader(source_dsn, schema, incremental={"column": "ts", "strategy": "timestamp"})
        await source.connect()
        try:
            plan = await source.plan()
            read = await source.read(plan, None, 2, "t")
            assert read is not None and read.last is not None and ids(read) == [1, 2]
            ahead = source._ahead  # the read ahead started (it may have finished already)
            assert ahead is not None
            await asyncio.wait([ahead.task])  # copied while the late transaction runs
            await transaction.commit()
            seen, position = ids(read), plan.position_after(read.last, None)
            while (read := await source.read(plan, position, 2, "t")) is not None and read.last is not None:
                seen += ids(read)
                position = plan.position_after(read.last, position)
        finally:
            await source.close()
    finally:
        await late.close()
    assert seen == [1, 2, 3, 4, 5, 6]
