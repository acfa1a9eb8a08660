"""Shared fixtures: the real PostgreSQL the test script started, a fresh schema per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

# Generated-case tests are deterministic (the same cases every run, no example database) and not
# timed: a loaded CI machine must not turn them flaky.
settings.register_profile(
    "conduitd", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("conduitd")

DEFAULT_PG_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/conduitd_test"


def require_or_skip(reason: str) -> None:
    """Fail under the test script (CONDUITD_REQUIRE_SERVICES=1), skip in a casual local run."""
    if os.environ.get("CONDUITD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    import asyncpg

    dsn = os.environ.get("CONDUITD_TEST_PG_DSN", DEFAULT_PG_DSN)

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        require_or_skip(f"PostgreSQL is not reachable at {dsn}: {exc} (run scripts/services.sh)")
    return dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{name}"'))
    yield name
    asyncio.run(run(f'DROP SCHEMA "{name}" CASCADE'))


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[object]:
    """An asyncpg connection for checking results."""
    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker the test script started (KAFKA_BOOTSTRAP), or a Tansu broker of this session."""
    from tests.helpers.kafka import start_tansu

    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    try:
        broker = start_tansu()
    except (OSError, RuntimeError) as exc:
        require_or_skip(f"no Kafka-protocol broker: {exc} (run scripts/services.sh)")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kinesis_endpoint() -> Iterator[str]:
    """The Kinesis server the test script started (CONDUITD_TEST_KINESIS), or a kinesis-local of
    this session (tests/helpers/kinesis.py)."""
    import subprocess

    from tests.helpers.kinesis import start_kinesis_local

    given = os.environ.get("CONDUITD_TEST_KINESIS")
    if given:
        yield given
        return
    try:
        server = start_kinesis_local()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        require_or_skip(f"no Kinesis server: {exc} (run scripts/services.sh)")
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def new_stream(kinesis_endpoint: str) -> Iterator[Callable[[str, int], str]]:
    """Creates Kinesis streams (prefix, shard count) -> name; deletes them after the test, so the
    server keeps few shards (its writes slow down as it holds more)."""
    from tests.helpers import kinesis

    client = kinesis.client(kinesis_endpoint)
    made: list[str] = []

    def create(prefix: str, count: int) -> str:
        name = kinesis.new_stream_name(prefix)
        kinesis.create_stream(client, name, count)
        made.append(name)
        return name

    yield create
    for name in made:
        kinesis.delete_stream(client, name)


@pytest.fixture
def db(pg_dsn: str, pg_schema: str) -> Iterator[object]:
    """A synchronous connection to the test's schema (tests/helpers/syncdb.py), for tests that
    sleep and send signals while the daemon works."""
    from tests.helpers.syncdb import Db

    database = Db(pg_dsn, pg_schema)
    try:
        yield database
    finally:
        database.close()
