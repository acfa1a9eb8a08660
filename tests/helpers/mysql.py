"""MySQL/MariaDB under test, looked into from outside the daemon (the server at CONDUITD_TEST_MYSQL,
default 127.0.0.1:3306 as root without a password; each test gets a database of its own).

- `MysqlDb`: the `tests.helpers.destinations.Db` of the tests that run the real CLI on several
  destinations, for `type: mysql`; `mysql(request)` makes one, `make_db(kind, ...)` picks any.
- `MysqlView`: a synchronous view on one connection, for the crash tests (which sleep, send
  signals and kill processes while the daemon works): the `syncdb.Db` methods they use.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.destinations import Db, postgres, sqlite

SERVER = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306")
HOST, _, _PORT = SERVER.partition(":")
PORT = int(_PORT or 3306)


def quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


async def _connect() -> Any:
    import asyncmy

    return await asyncmy.connect(host=HOST, port=PORT, user="root", autocommit=True, charset="utf8mb4")


async def _run(statements: Sequence[str], params: Sequence[Any] | None) -> list[dict[str, Any]]:
    from asyncmy.cursors import DictCursor

    conn = await _connect()
    try:
        async with conn.cursor(DictCursor) as cursor:
            for statement in statements:
                await cursor.execute(statement, params)
            return list(await cursor.fetchall())
    finally:
        conn.close()


def sql(statement: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Run one statement as root (autocommit); its rows as dicts."""
    return asyncio.run(_run([statement], params))


def reachable_or_skip() -> None:
    """Skip the test when no server answers, unless CONDUITD_REQUIRE_SERVICES=1 (then fail)."""
    from tests.conftest import require_or_skip

    try:
        import asyncmy  # noqa: F401 - the `mysql` extra
        sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the reason given
        require_or_skip(f"MySQL/MariaDB is not reachable at {SERVER}: {exc} (run scripts/services.sh)")


def new_database(request: pytest.FixtureRequest) -> str:
    """A fresh database (utf8mb4), dropped when the test ends."""
    reachable_or_skip()
    name = f"conduitd_test_{uuid.uuid4().hex[:10]}"
    sql(f"CREATE DATABASE {quoted(name)} CHARACTER SET utf8mb4")
    request.addfinalizer(lambda: sql(f"DROP DATABASE IF EXISTS {quoted(name)}"))
    return name


@contextmanager
def fresh_database() -> Iterator[str]:
    """A fresh database (utf8mb4) for the body of the `with`, dropped afterwards."""
    name = f"conduitd_test_{uuid.uuid4().hex[:10]}"
    sql(f"CREATE DATABASE {quoted(name)} CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        sql(f"DROP DATABASE IF EXISTS {quoted(name)}")


def destination(database: str, name: str = "db") -> dict[str, Any]:
    """The `destinations:` entry of a config writing into `database`."""
    return {"name": name, "type": "mysql", "host": HOST, "port": PORT, "user": "root", "database": database,
            "connect_timeout": 5}


class MysqlDb(Db):
    """`Db` for MySQL: `schema` is the database; statements take %s parameters."""

    def name(self, table: str) -> str:
        return f"{quoted(self.schema)}.{quoted(table)}"

    def rows(self, sql_text: str, *args: Any) -> list[dict[str, Any]]:
        return sql(sql_text, args or None)

    def execute(self, sql_text: str) -> None:
        """Statements ended by ';' and a newline (a migration file); "double quotes" quote names
        here too (ANSI_QUOTES), so SQL the shared tests write for PostgreSQL and SQLite works."""
        statements = [s.strip().removesuffix(";") for s in sql_text.split(";\n") if s.strip()]
        asyncio.run(_run(["SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')", *statements], None))

    def columns(self, table: str) -> dict[str, tuple[str, bool]]:
        return {r["COLUMN_NAME"]: (r["COLUMN_TYPE"], r["IS_NULLABLE"] == "YES") for r in self.rows(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", self.schema, table)}

    def tables(self) -> set[str]:
        return {r["TABLE_NAME"] for r in self.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", self.schema)}

    def history(self) -> list[dict[str, Any]]:
        rows = self.rows("SELECT pipeline, table_name, `change`, column_name, old_definition, new_definition, ddl, "
                         f"applied FROM {self.name('conduitd_schema_history')} ORDER BY id")
        return [{**r, "applied": bool(r["applied"])} for r in rows]

    def checkpoints(self) -> dict[str, Any]:
        return {r["partition"]: json.loads(r["position"]) for r in self.rows(
            f"SELECT `partition`, position FROM {self.name('conduitd_checkpoints')}")}


def mysql(request: pytest.FixtureRequest) -> MysqlDb:
    """A `Db` on a fresh database of its own (skipped when the server is not reachable)."""
    database = new_database(request)
    return MysqlDb("mysql", destination(database), schema=database)


def make_db(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """The destination under test of a test parametrized over "postgres", "sqlite", "mysql"."""
    if kind == "mysql":
        return mysql(request)
    return postgres(request) if kind == "postgres" else sqlite(tmp_path)


class MysqlView:
    """One autocommit connection driven by a private event loop (each read sees what is committed)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.loop = asyncio.new_event_loop()
        self.conn: Any = self.loop.run_until_complete(_connect())

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.conn.ensure_closed())
        finally:
            self.loop.close()

    def table(self, name: str) -> str:
        return f"{quoted(self.database)}.{quoted(name)}"

    def fetch(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        from asyncmy.cursors import DictCursor

        async def run() -> list[dict[str, Any]]:
            async with self.conn.cursor(DictCursor) as cursor:
                await cursor.execute(statement, args or None)
                return list(await cursor.fetchall())
        return self.loop.run_until_complete(run())

    def fetchval(self, statement: str, *args: Any) -> Any:
        rows = self.fetch(statement, *args)
        return next(iter(rows[0].values())) if rows else None

    def exists(self, table: str) -> bool:
        return bool(self.fetch("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                               self.database, table))

    def count(self, table: str = "events") -> int:
        """Rows in `table` (0 while it does not exist)."""
        return int(self.fetchval(f"SELECT count(*) FROM {self.table(table)}")) if self.exists(table) else 0

    def checkpoints(self, pipeline: str = "events") -> dict[str, int]:
        """partition -> committed offset."""
        if not self.exists("conduitd_checkpoints"):
            return {}
        rows = self.fetch(f"SELECT `partition`, position FROM {self.table('conduitd_checkpoints')} "
                          "WHERE pipeline = %s", pipeline)
        return {r["partition"]: int(json.loads(r["position"])["offset"]) for r in rows}

    def columns(self, table: str = "events") -> list[str]:
        return [r["COLUMN_NAME"] for r in self.fetch(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION", self.database, table)]
