"""Rows the destination refuses (a CHECK, a key already in the table, NOT NULL, a too long value)
go to the DLQ with the server's reason, every other row is written, and finding them costs a
number of write attempts in proportion to the refused rows, not to refused rows x log(batch)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import conduitd.runtime.commit as commit_module
from conduitd.config import PipelineConfig, PostgresDestinationConfig, SqliteDestinationConfig
from conduitd.core.records import Batch, Chunk
from conduitd.destinations.postgres import PostgresDestination
from conduitd.destinations.postgres.errors import translate
from conduitd.destinations.sqlite import SqliteDestination
from conduitd.errors import TransientError
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import commit_batch
from conduitd.runtime.isolate import Isolation

ROWS = 200_000
TABLE = "orders"
PG_TABLE = (f"CREATE TABLE {{}}.{TABLE} (id bigint PRIMARY KEY, "
            "v bigint CONSTRAINT v_not_negative CHECK (v >= 0), name varchar(8) NOT NULL)")
SQLITE_TABLE = (f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, v INTEGER CONSTRAINT v_not_negative CHECK (v >= 0), "
                "name TEXT NOT NULL CONSTRAINT name_short CHECK (length(name) <= 8))")


def pipeline(**extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "orders", "source": "s", "destination": "d", **extra})


def one_batch(rows: pa.Table) -> Batch:
    return build_batch([Chunk("p", None, {"offset": rows.num_rows}, rows, (), 1)])


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Write attempts of each isolation the commit runs (counted by the isolation itself)."""
    seen: list[int] = []
    real = commit_module.write_isolating

    async def counting(*args: Any, **kwargs: Any) -> Isolation:
        result = await real(*args, **kwargs)
        seen.append(result.attempts)
        return result
    monkeypatch.setattr(commit_module, "write_isolating", counting)
    return seen


def one_in_a_hundred(n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(8).choice(n, n // 100, replace=False))


def assert_bounded(attempts: list[int], refused: int, n: int) -> None:
    """O(refused): a few attempts per refused row. Halving needs about 2 x log2(n / refused) per
    refused row (about 14 here): the bound sits far below it."""
    assert len(attempts) == 1
    assert attempts[0] <= 3 * refused + 2 * math.log2(n)
    assert attempts[0] < refused * math.log2(n / refused)


async def pg_destination(dsn: str, schema: str) -> PostgresDestination:
    d = PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "d", "type": "postgres", "dsn": dsn, "schema": schema}))
    await d.open()
    return d


NO_OP_TRIGGER = """CREATE FUNCTION {0}.keep() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER keep BEFORE INSERT ON {0}.orders FOR EACH ROW EXECUTE FUNCTION {0}.keep()"""


@pytest.mark.parametrize("cause", ["check", "key_exists", "too_long", "foreign_key", "check_behind_a_trigger"])
async def test_refused_rows_cost_attempts_in_proportion_to_their_number_postgres(
        cause: str, pg: Any, pg_dsn: str, pg_schema: str, attempts: list[int]) -> None:
    """Screened together (one failed attempt, one query, one write of the rest) where the catalog
    tells; behind a BEFORE trigger (which could change rows) the server names each refused row's
    COPY line instead: about one attempt per refused row."""
    schema = f'"{pg_schema}"'
    await pg.execute(PG_TABLE.format(schema))
    bad = one_in_a_hundred(ROWS)
    v = np.ones(ROWS, dtype=np.int64)
    names = np.array(["new"] * ROWS, dtype=object)
    if cause in ("check", "check_behind_a_trigger"):
        v[bad] = -1
    elif cause == "too_long":
        names[bad] = "new but far too long"
    elif cause == "foreign_key":
        await pg.execute(f"CREATE TABLE {schema}.kinds (v bigint PRIMARY KEY); "
                         f"INSERT INTO {schema}.kinds VALUES (1); ALTER TABLE {schema}.{TABLE} "
                         f"ADD CONSTRAINT known_kind FOREIGN KEY (v) REFERENCES {schema}.kinds (v)")
        v[bad] = 2
    else:
        await pg.copy_records_to_table(TABLE, schema_name=pg_schema, records=[(int(i), 7, "old") for i in bad])
    if cause == "check_behind_a_trigger":
        await pg.execute(NO_OP_TRIGGER.format(schema))
    rows = pa.table({"id": np.arange(ROWS), "v": v, "name": pa.array(names.tolist(), pa.string())})
    res = pipeline()
    d = await pg_destination(pg_dsn, pg_schema)
    try:
        await d.setup(res)
        result = await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    assert (result.rows_written, result.dlq_rows) == (ROWS - len(bad), len(bad))
    written = {r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".{TABLE} WHERE name <> $1', "old")}
    dlq = await pg.fetch(f'SELECT (payload::jsonb->>\'id\')::bigint AS id, rule, reason FROM "{pg_schema}".orders_dlq')
    assert written.isdisjoint(r["id"] for r in dlq)
    assert written | {r["id"] for r in dlq} == set(range(ROWS))
    assert sorted(r["id"] for r in dlq) == bad.tolist()
    constraint = {"key_exists": "orders_pkey", "too_long": "'name'", "foreign_key": "known_kind"}.get(
        cause, "v_not_negative")
    assert all(r["rule"] == "refused" and constraint in r["reason"] for r in dlq)
    assert_bounded(attempts, len(bad), ROWS)
    if cause != "check_behind_a_trigger":
        assert attempts == [2]  # the batch, refused; then the rest, screened out, written at once


@pytest.mark.parametrize("cause", ["check", "key_exists"])
async def test_refused_rows_cost_attempts_in_proportion_to_their_number_sqlite(
        cause: str, tmp_path: Path, attempts: list[int]) -> None:
    path = tmp_path / "d.db"
    db = sqlite3.connect(path)
    db.execute(SQLITE_TABLE)
    bad = one_in_a_hundred(ROWS)
    v = np.ones(ROWS, dtype=np.int64)
    if cause == "check":
        v[bad] = -1
    else:
        db.executemany(f"INSERT INTO {TABLE} VALUES (?, 7, 'old')", [(int(i),) for i in bad])
    db.commit()
    db.close()
    rows = pa.table({"id": np.arange(ROWS), "v": v, "name": pa.array(["new"] * ROWS)})
    res = pipeline()
    d = SqliteDestination(SqliteDestinationConfig.model_validate({"name": "d", "type": "sqlite", "path": str(path)}))
    await d.open()
    try:
        await d.setup(res)
        result = await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    assert (result.rows_written, result.dlq_rows) == (ROWS - len(bad), len(bad))
    db = sqlite3.connect(path)
    written = {r[0] for r in db.execute(f"SELECT id FROM {TABLE} WHERE name = 'new'")}
    dlq = db.execute("SELECT json_extract(payload, '$.id'), rule, reason FROM orders_dlq").fetchall()
    db.close()
    assert written.isdisjoint(r[0] for r in dlq)
    assert written | {r[0] for r in dlq} == set(range(ROWS))
    constraint = "v_not_negative" if cause == "check" else f"{TABLE}.id"
    assert all(r[1] == "refused" and constraint in r[2] for r in dlq)
    assert_bounded(attempts, len(bad), ROWS)


@pytest.mark.parametrize("trigger", [False, True])
async def test_an_upsert_whose_merge_refuses_rows_narrows_only_near_them(
        trigger: bool, pg: Any, pg_dsn: str, pg_schema: str, attempts: list[int]) -> None:
    """In an upsert the CHECK fails in `INSERT ... SELECT FROM staging`, where no COPY line names
    the row: the merge is retried row by row inside the server in one statement, which finds
    every refused row, with or without a BEFORE trigger, in one write attempt."""
    n = 5_000 if trigger else 20_000
    await pg.execute(PG_TABLE.format(f'"{pg_schema}"'))
    if trigger:
        await pg.execute(NO_OP_TRIGGER.format(f'"{pg_schema}"'))
    bad = one_in_a_hundred(n)
    v = np.ones(n, dtype=np.int64)
    v[bad] = -1
    rows = pa.table({"id": np.arange(n), "v": v, "name": pa.array(["new"] * n)})
    res = pipeline(mode="upsert", unique_key=["id"])
    d = await pg_destination(pg_dsn, pg_schema)
    try:
        await d.setup(res)
        result = await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    assert (result.rows_written, result.dlq_rows) == (n - len(bad), len(bad))
    dlq = await pg.fetch(f'SELECT (payload::jsonb->>\'id\')::bigint AS id, reason FROM "{pg_schema}".orders_dlq')
    assert sorted(r["id"] for r in dlq) == bad.tolist()
    assert all("v_not_negative" in r["reason"] for r in dlq)
    assert attempts == [1]  # before: screened (2), or halved behind the trigger (refused x 2 log2(gap))


# Generated batches: each row is good or bad in one or more ways the table refuses.
_FAULTS = ("null_name", "long_name", "key_exists", "check", "duplicate_in_batch")
_NAMES = {"null_name": "name", "long_name": "name", "key_exists": "orders_pkey", "check": "v_not_negative",
          "duplicate_in_batch": "orders_pkey"}
rows_with_faults = st.lists(st.sets(st.sampled_from(_FAULTS), max_size=2), min_size=1, max_size=60).map(
    lambda faults: [set(), *faults])  # the first row is good: the one a duplicate repeats


def generated_rows(faults: list[set[str]]) -> tuple[pa.Table, list[int]]:
    """The batch for `faults` (one set per row) and the ids already in the table."""
    ids, vs, names, existing = [], [], [], []
    for i, fault in enumerate(faults):
        row_id = 1000 + i
        if "duplicate_in_batch" in fault:
            row_id = ids[0]  # the first row (always good) is written with that id: this one is refused
        elif "key_exists" in fault:
            existing.append(row_id)
        ids.append(row_id)
        vs.append(-1 if "check" in fault else 1)
        names.append(None if "null_name" in fault else ("x" * 9 if "long_name" in fault else f"r{i}"))
    table = pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array(vs, pa.int64()),
                      "name": pa.array(names, pa.string()), "row": pa.array(range(len(faults)), pa.int64())})
    return table, sorted(set(existing))


@given(faults=rows_with_faults, trigger=st.booleans())
def test_generated_bad_rows_each_land_in_exactly_one_place_postgres(
        faults: list[set[str]], trigger: bool, pg_dsn: str, pg_schema: str) -> None:
    """`trigger`: a BEFORE trigger turns the screen off, so the write attempts find every row."""
    asyncio.run(_generated_postgres(faults, trigger, pg_dsn, pg_schema))


async def _generated_postgres(faults: list[set[str]], trigger: bool, dsn: str, schema: str) -> None:
    rows, existing = generated_rows(faults)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{schema}".{TABLE}; DROP TABLE IF EXISTS "{schema}".orders_dlq; '
                           f'DROP TABLE IF EXISTS "{schema}".conduitd_checkpoints; '
                           f'DROP FUNCTION IF EXISTS "{schema}".keep CASCADE; '
                           + PG_TABLE.format(f'"{schema}"').replace("NOT NULL)", "NOT NULL, row bigint)"))
        if trigger:
            await conn.execute(NO_OP_TRIGGER.format(f'"{schema}"'))
        await conn.executemany(f'INSERT INTO "{schema}".{TABLE} VALUES ($1, 7, $2, -1)',
                               [(i, "old") for i in existing])
        res = pipeline()
        d = await pg_destination(dsn, schema)
        try:
            await d.setup(res)
            await commit_batch(d, res, one_batch(rows))
        finally:
            await d.close()
        written = [r["row"] for r in await conn.fetch(f'SELECT row FROM "{schema}".{TABLE} WHERE row >= 0')]
        dlq = [(int(r["row"]), r["reason"], r["column_name"]) for r in await conn.fetch(
            f'SELECT (payload::jsonb->>\'row\')::bigint AS row, reason, column_name FROM "{schema}".orders_dlq')]
    finally:
        await conn.close()
    assert_exactly_once(faults, written, dlq)


@given(faults=rows_with_faults)
def test_generated_bad_rows_each_land_in_exactly_one_place_sqlite(faults: list[set[str]], tmp_path: Path) -> None:
    asyncio.run(_generated_sqlite(faults, tmp_path))


async def _generated_sqlite(faults: list[set[str]], tmp_path: Path) -> None:
    rows, existing = generated_rows(faults)
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path)
    db.execute(SQLITE_TABLE.replace("<= 8))", "<= 8), row INTEGER)"))
    db.executemany(f"INSERT INTO {TABLE} VALUES (?, 7, 'old', -1)", [(i,) for i in existing])
    db.commit()
    db.close()
    res = pipeline()
    d = SqliteDestination(SqliteDestinationConfig.model_validate({"name": "d", "type": "sqlite", "path": str(path)}))
    await d.open()
    try:
        await d.setup(res)
        await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    db = sqlite3.connect(path)
    written = [r[0] for r in db.execute(f"SELECT row FROM {TABLE} WHERE row >= 0")]
    dlq = [(int(r[0]), r[1], r[2]) for r in db.execute(
        "SELECT json_extract(payload, '$.row'), reason, column_name FROM orders_dlq")]
    db.close()
    sqlite_names = {"name": "name", "orders_pkey": f"{TABLE}.id", "v_not_negative": "v_not_negative"}
    assert_exactly_once(faults, written, dlq, sqlite_names | {"name": "name_short"},
                        also={"null_name": f"{TABLE}.name"})


def assert_exactly_once(faults: list[set[str]], written: list[int], dlq: list[tuple[int, str, str | None]],
                        rename: dict[str, str] | None = None, also: dict[str, str] | None = None) -> None:
    """Every generated row is in exactly one of the table or the DLQ; a row with a fault is in
    the DLQ (the first row holding a duplicated id is good), with a reason naming the column or
    constraint of one of its faults; a row without one is in the table."""
    dead = {row: reason for row, reason, _ in dlq}
    assert len(dead) == len(dlq)
    assert not set(written) & set(dead)
    assert set(written) | set(dead) == set(range(len(faults)))
    for row, fault in enumerate(faults):
        if not fault:
            assert row in written, (row, fault, dead.get(row))
            continue
        assert row in dead, (row, fault)
        expected = {(rename or {}).get(_NAMES[f], _NAMES[f]) for f in fault}
        expected |= {(also or {})[f] for f in fault if f in (also or {})}
        assert any(name in dead[row] for name in expected), (row, fault, dead[row])
        assert "Traceback" not in dead[row]


def test_both_ways_a_dropped_connection_shows_up_are_one_retriable_class() -> None:
    """Mid-write, a dropped connection reaches us as asyncpg's 08003 `connection was closed in
    the middle of operation` or as an interface error, depending on timing: both translate into
    TransientError at the boundary (the flaky test asserted one wording)."""
    for raised in (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
                   asyncpg.InterfaceError("connection is closed"), ConnectionResetError("reset by peer")):
        translated = translate(raised)
        assert isinstance(translated, TransientError) and translated.retriable


async def test_a_screen_that_fails_itself_leaves_the_rows_to_the_write_attempts(
        pg: Any, pg_dsn: str, pg_schema: str) -> None:
    """A CHECK whose expression errs for some rows (division by zero) makes the screening query
    fail: nothing is screened, and the write attempts, where the server names each row, still
    put every row in exactly one place. Identifiers that could break out of quotes stay names."""
    weird = 'v"; DROP TABLE x; --'
    quoted = '"' + weird.replace('"', '""') + '"'
    await pg.execute(f'CREATE TABLE "{pg_schema}".{TABLE} (id bigint PRIMARY KEY, {quoted} bigint NOT NULL '
                     f'CONSTRAINT "odd "" check" CHECK (100 / {quoted} > 0))')
    n = 2_000
    values = [0 if i % 97 == 5 else (-1 if i % 89 == 3 else 1) for i in range(n)]
    rows = pa.table({"id": pa.array(range(n), pa.int64()), weird: pa.array(values, pa.int64())})
    res = pipeline()
    d = await pg_destination(pg_dsn, pg_schema)
    try:
        await d.setup(res)
        result = await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    bad = [i for i, v in enumerate(values) if v != 1]
    assert (result.rows_written, result.dlq_rows) == (n - len(bad), len(bad))
    written = {r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".{TABLE}')}
    dlq = await pg.fetch(f'SELECT (payload::jsonb->>\'id\')::bigint AS id, reason FROM "{pg_schema}".orders_dlq')
    assert written == set(range(n)) - set(bad)
    assert sorted(r["id"] for r in dlq) == bad
    assert all("22012" in r["reason"] or 'odd " check' in r["reason"] for r in dlq)


@given(lines=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=40))
def test_csv_copy_lines_never_blame_the_wrong_row(lines: list[tuple[int, bool]], pg_dsn: str, pg_schema: str) -> None:
    """A column type without a binary encoder (inet) sends the rows as CSV, where the server
    counts the line breaks inside values as lines: its line number must not be taken for the row.
    Behind a BEFORE trigger (no screen) every refused row is met by the write attempts."""
    asyncio.run(_csv_lines(lines, pg_dsn, pg_schema))


async def _csv_lines(lines: list[tuple[int, bool]], dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{schema}".{TABLE}; DROP TABLE IF EXISTS "{schema}".orders_dlq; '
                           f'DROP TABLE IF EXISTS "{schema}".conduitd_checkpoints; '
                           f'DROP FUNCTION IF EXISTS "{schema}".keep CASCADE; '
                           f'CREATE TABLE "{schema}".{TABLE} (id bigint, note text, '
                           "v bigint CONSTRAINT v_not_negative CHECK (v >= 0), at inet)")
        await conn.execute(NO_OP_TRIGGER.format(f'"{schema}"'))
        rows = pa.table({"id": pa.array(range(len(lines)), pa.int64()),
                         "note": pa.array(["x" + "\n" * breaks for breaks, _ in lines]),
                         "v": pa.array([-1 if bad else 1 for _, bad in lines], pa.int64()),
                         "at": pa.array(["10.0.0.1"] * len(lines))})
        res = pipeline()
        d = await pg_destination(dsn, schema)
        try:
            await d.setup(res)
            await commit_batch(d, res, one_batch(rows))
        finally:
            await d.close()
        written = sorted(r["id"] for r in await conn.fetch(f'SELECT id FROM "{schema}".{TABLE}'))
        dead = sorted(r["id"] for r in await conn.fetch(
            f'SELECT (payload::jsonb->>\'id\')::bigint AS id FROM "{schema}".orders_dlq'))
    finally:
        await conn.close()
    assert written == [i for i, (_, bad) in enumerate(lines) if not bad]
    assert dead == [i for i, (_, bad) in enumerate(lines) if bad]


async def test_an_upsert_leaves_a_not_null_column_it_lacks_to_the_table(
        pg: Any, pg_dsn: str, pg_schema: str) -> None:
    """The stage held every column of the table with its NOT NULL: a NOT NULL column with a
    default that the batch lacks was NULL there and every row was refused. New rows get the
    default, updated rows keep their value."""
    await pg.execute(f'CREATE TABLE "{pg_schema}".{TABLE} (id bigint PRIMARY KEY, name varchar(8), '
                     "created text NOT NULL DEFAULT 'by default'); "
                     f"INSERT INTO \"{pg_schema}\".{TABLE} VALUES (1, 'old', 'kept')")
    res = pipeline(mode="upsert", unique_key=["id"])
    d = await pg_destination(pg_dsn, pg_schema)
    try:
        await d.setup(res)
        rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["new", "b", "far too long"]})
        result = await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
    assert (result.rows_written, result.dlq_rows) == (2, 1)
    stored = [tuple(r) for r in await pg.fetch(f'SELECT id, name, created FROM "{pg_schema}".{TABLE} ORDER BY id')]
    assert stored == [(1, "new", "kept"), (2, "b", "by default")]
    reasons = [r["reason"] for r in await pg.fetch(f'SELECT reason FROM "{pg_schema}".orders_dlq')]
    assert len(reasons) == 1 and "22001" in reasons[0] and "'name'" in reasons[0]
