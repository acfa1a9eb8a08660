"""A role confined to its schema can run: no CREATE on the database is needed when the schema
exists, and no CREATE on the schema when conduitd's tables exist (issue 8, item 13)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.helpers.daemon import conduitd, write_config


@pytest.fixture
def confined_role(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A login role with USAGE and CREATE on `pg_schema` only (not CREATE on the database)."""
    role = f"confined_{uuid.uuid4().hex[:8]}"

    async def run(*statements: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE ROLE "{role}" LOGIN', f'GRANT USAGE, CREATE ON SCHEMA "{pg_schema}" TO "{role}"'))
    yield role
    asyncio.run(run(f'DROP OWNED BY "{role}" CASCADE', f'DROP ROLE "{role}"'))


def role_dsn(pg_dsn: str, role: str) -> str:
    host_and_db = pg_dsn.split("@", 1)[1]  # the test server trusts local logins
    return f"postgresql://{role}@{host_and_db}"


def run_once(tmp_path: Path, dsn: str, schema: str) -> tuple[int, str]:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1}\n{"id": 2}\n')
    config = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(data)}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "items", "source": "files", "destination": "pg"}],
    })
    result = conduitd("run", "--once", "-c", str(config))
    return result.returncode, result.stderr


def test_a_role_without_create_on_the_database_runs_in_its_existing_schema(
        tmp_path: Path, pg_dsn: str, pg_schema: str, confined_role: str) -> None:
    code, stderr = run_once(tmp_path, role_dsn(pg_dsn, confined_role), pg_schema)
    assert code == 0, stderr
    assert "2 rows written" in stderr


async def _table_count(pg_dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".items'))
    finally:
        await conn.close()


def test_a_role_without_create_on_the_schema_runs_once_the_tables_exist(
        tmp_path: Path, pg_dsn: str, pg_schema: str, confined_role: str) -> None:
    code, stderr = run_once(tmp_path, pg_dsn, pg_schema)  # the owner creates the tables
    assert code == 0, stderr

    async def confine() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'REVOKE CREATE ON SCHEMA "{pg_schema}" FROM "{confined_role}";'
                               f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{pg_schema}" '
                               f'TO "{confined_role}";'
                               f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{pg_schema}" TO "{confined_role}"')
        finally:
            await conn.close()

    asyncio.run(confine())
    (tmp_path / "again").mkdir()
    code, stderr = run_once(tmp_path / "again", role_dsn(pg_dsn, confined_role), pg_schema)
    assert code == 0, stderr
    assert asyncio.run(_table_count(pg_dsn, pg_schema)) == 4


def validate(tmp_path: Path, dsn: str, schema: str) -> tuple[int, str]:
    run_once_config = tmp_path / "conduitd.yaml"
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    write_config(run_once_config, {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in.jsonl")}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "items", "source": "files", "destination": "pg"}],
    })
    result = conduitd("validate", "-c", str(run_once_config))
    return result.returncode, result.stdout + result.stderr


def test_validate_fails_where_run_would_for_want_of_a_privilege(
        tmp_path: Path, pg_dsn: str, pg_schema: str, confined_role: str) -> None:
    """validate passed, then run failed with 42501: a missing schema the role cannot create, and
    missing tables in a schema it cannot create tables in."""
    dsn = role_dsn(pg_dsn, confined_role)
    code, out = validate(tmp_path, dsn, pg_schema)  # USAGE and CREATE on its schema: fine
    assert code == 0, out
    code, out = validate(tmp_path, dsn, f"{pg_schema}_missing")
    assert code == 2 and "cannot create schema" in out and "Traceback" not in out, out
    assert run_once(tmp_path, dsn, f"{pg_schema}_missing")[0] != 0  # as validate said

    async def no_create() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'REVOKE CREATE ON SCHEMA "{pg_schema}" FROM "{confined_role}"')
        finally:
            await conn.close()

    asyncio.run(no_create())
    code, out = validate(tmp_path, dsn, pg_schema)
    assert code == 2 and "cannot create tables" in out and "conduitd_checkpoints" in out, out
    assert run_once(tmp_path, dsn, pg_schema)[0] != 0
