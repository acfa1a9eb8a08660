"""The connector contract kit (`conduitd.testing.contract`) run against the MySQL/MariaDB
destination (the server at CONDUITD_TEST_MYSQL, default 127.0.0.1:3306 as root without a
password), each test in a database of its own, dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from conduitd.destinations.base import Destination
from conduitd.testing.contract import DestinationContract, SecretCase
from tests.conftest import require_or_skip
from tests.helpers.kafka import free_port

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("asyncmy")  # the `mysql` extra; under the test script it must be installed

SERVER = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306")
HOST, _, PORT = SERVER.partition(":")


def mysql_dsn(database: str, user: str = "root", password: str = "", port: int | None = None) -> str:
    secret = f":{urllib.parse.quote(password, safe='')}" if password else ""
    return f"mysql://{user}{secret}@{HOST}:{port or int(PORT or 3306)}/{database}"


def destination(dsn: str) -> Destination:
    from conduitd.destinations.mysql.destination import MysqlDestination
    from conduitd.destinations.mysql.settings import MysqlDestinationConfig

    return MysqlDestination(MysqlDestinationConfig.model_validate(
        {"name": "d", "type": "mysql", "dsn": dsn, "connect_timeout": 5}))


async def sql(statement: str, params: Sequence[Any] | None = None, database: str | None = None
              ) -> list[dict[str, Any]]:
    """Run one statement as root; its rows as dicts."""
    import asyncmy
    from asyncmy.cursors import DictCursor

    conn = await asyncmy.connect(host=HOST, port=int(PORT or 3306), user="root", database=database,
                                 autocommit=True, charset="utf8mb4")
    try:
        async with conn.cursor(DictCursor) as cursor:
            await cursor.execute(statement, params)
            return list(await cursor.fetchall())
    finally:
        conn.close()


def quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """host:port of a reachable MariaDB/MySQL; skipped when there is none, unless
    CONDUITD_REQUIRE_SERVICES=1 (then it fails)."""
    try:
        asyncio.run(sql("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the reason given
        require_or_skip(f"MySQL/MariaDB is not reachable at {SERVER}: {exc} (run scripts/services.sh)")
    return SERVER


@pytest.fixture
def mysql_database(mysql_server: str) -> Iterator[str]:
    """The name of a database of its own for one test (created by the destination), dropped afterwards."""
    name = f"conduitd_test_{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(sql(f"DROP DATABASE IF EXISTS {quoted(name)}"))


class TestMysqlContract(DestinationContract):
    @pytest.fixture(autouse=True)
    def _database(self, mysql_database: str) -> None:
        self.database = mysql_database

    def make_destination(self) -> Destination:
        return destination(mysql_dsn(self.database))

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        return await sql(f"SELECT * FROM {quoted(self.database)}.{quoted(table)}")

    def secret_cases(self) -> Sequence[SecretCase]:
        secret = f"Contract-{uuid.uuid4().hex[:8]}-p@ss:w/rd"
        wrong_password = mysql_dsn(self.database, password=secret)
        unknown_user = mysql_dsn(self.database, user=f"no_such_user_{uuid.uuid4().hex[:6]}", password=secret)
        nobody_listens = mysql_dsn(self.database, password=secret, port=free_port())
        return [SecretCase(lambda dsn=dsn: destination(dsn), secret)  # type: ignore[misc]
                for dsn in (wrong_password, unknown_user, nobody_listens)]
