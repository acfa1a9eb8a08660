"""Hard deletes by key scan (issue 10, item 4): rows deleted at the source are deleted from the
table, in batch transactions, compared in bounded chunks; PostgreSQL and MariaDB sources."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration import test_mysql_source as mysql_side
from tests.integration import test_postgres_source as pg_side

source_dsn = pg_side.source_dsn
my_database = mysql_side.my_database
my = mysql_side.my


@pytest.fixture
async def pgsrc(source_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(source_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def schema(pgsrc: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"k_{uuid.uuid4().hex[:10]}"
    await pgsrc.execute(f'CREATE SCHEMA "{name}"')
    yield name
    await pgsrc.execute(f'DROP SCHEMA "{name}" CASCADE')


PIPELINE = """\
- name: copy
  source: db
  destination: wh
  source_table: src
  table: dst
  mode: upsert
  unique_key: [k, n]
  batch: {max_rows: 1000}
  deletes: {key_scan: 1h}
"""


async def dst(pg: asyncpg.Connection, schema: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pg.fetch(f'SELECT k, n, v FROM "{schema}".dst ORDER BY k, n')]


async def test_rows_deleted_at_a_postgresql_source_are_deleted_across_chunks(
        pgsrc: asyncpg.Connection, source_dsn: str, schema: str, tmp_path: Path) -> None:
    s = f'"{schema}"'
    await pgsrc.execute(f"CREATE TABLE {s}.src (k text, n bigint, v text, PRIMARY KEY (k, n))")
    await pgsrc.execute(f"INSERT INTO {s}.src SELECT 'k' || (g % 3), g, 'v' || g FROM generate_series(1, 3500) g")
    config = pg_side.write_config(tmp_path, source_dsn, schema, PIPELINE)
    await pg_side.once(config)
    assert len(await dst(pgsrc, schema)) == 3500
    gone = [1, 999, 1000, 1001, 2500, 3500]
    await pgsrc.execute(f"DELETE FROM {s}.src WHERE n = ANY($1::bigint[])", gone)
    await pgsrc.execute(f"INSERT INTO {s}.src VALUES ('k9', 1, 'new')")
    await pg_side.once(config)
    expected = [tuple(r) for r in await pgsrc.fetch(f"SELECT k, n, v FROM {s}.src ORDER BY k, n")]
    assert await dst(pgsrc, schema) == expected
    assert len(expected) == 3500 - len(gone) + 1
    await pg_side.once(config)  # nothing more to delete, nothing duplicated
    assert await dst(pgsrc, schema) == expected


async def test_rows_deleted_at_a_mariadb_source_are_deleted(my: Any, my_database: str, pg_dsn: str,
                                                            pg_schema: str, pg: asyncpg.Connection,
                                                            tmp_path: Path) -> None:
    await mysql_side.my_run(my, "CREATE TABLE src (k VARCHAR(10), n BIGINT, v TEXT, PRIMARY KEY (k, n))")
    try:
        await mysql_side.my_run(my, "INSERT INTO src SELECT CONCAT('k', seq % 3), seq, CONCAT('v', seq) "
                                    "FROM seq_1_to_2500")
        config = mysql_side.write_config(tmp_path, my_database, pg_dsn, pg_schema, PIPELINE)
        await mysql_side.once(config)
        assert len(await dst(pg, pg_schema)) == 2500
        await mysql_side.my_run(my, "DELETE FROM src WHERE n IN (1, 1000, 1001, 2500)")
        await mysql_side.once(config)
        expected = [tuple(r) for r in await mysql_side.my_run(my, "SELECT k, n, v FROM src ORDER BY k, n")]
        assert await dst(pg, pg_schema) == expected
        assert len(expected) == 2496
    finally:
        await mysql_side.my_run(my, "DROP TABLE src")


def test_key_scan_needs_upsert(tmp_path: Path) -> None:
    from conduitd.config import PipelineConfig

    with pytest.raises(ValueError, match="key_scan deletes rows by key"):
        PipelineConfig.model_validate({"name": "x", "source": "s", "destination": "d",
                                       "deletes": {"key_scan": "1h"}})
