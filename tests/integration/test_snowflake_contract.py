"""The connector contract kit (`conduitd.testing.contract`) run against the Snowflake destination
through the official connector, with `fakesnow` (a Snowflake emulator on DuckDB) patched into it:
every test has an in-memory Snowflake of its own. The secret test runs without the emulator: the
real connector fails to log in to an account that cannot be reached."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig
from conduitd.destinations.base import Destination
from conduitd.destinations.sql import HISTORY
from conduitd.runtime.commit import Committer
from conduitd.testing import scenario
from conduitd.testing.contract import DestinationContract, Refusal, SecretCase

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("fakesnow")  # the test extra; under the test script it must be installed

DATABASE, SCHEMA = "CONDUITD", "LOADS"


def destination(**overrides: Any) -> Destination:
    from conduitd.destinations.snowflake.destination import SnowflakeDestination
    from conduitd.destinations.snowflake.settings import SnowflakeDestinationConfig

    section = {"name": "d", "type": "snowflake", "account": "conduitd-test", "user": "loader",
               "password": "not-checked", "database": DATABASE, "schema": SCHEMA, "warehouse": "load_wh",
               **overrides}
    return SnowflakeDestination(SnowflakeDestinationConfig.model_validate(section))


def query(sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Run one statement through the connector (patched by fakesnow); its rows as dicts."""
    import snowflake.connector

    conn = snowflake.connector.connect(account="x", user="reader", password="x", database=DATABASE, schema=SCHEMA,
                                       paramstyle="qmark")
    try:
        cursor = conn.cursor(snowflake.connector.DictCursor)
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        conn.close()


@pytest.fixture
def fake_snowflake(request: pytest.FixtureRequest) -> Iterator[None]:
    """fakesnow patched into the connector for one test (its databases in memory)."""
    import fakesnow

    with warnings.catch_warnings():
        # fakesnow's own notices (it copies DB-API results through Arrow); not conduitd's.
        warnings.simplefilter("ignore", UserWarning)
        with fakesnow.patch():
            yield


class TestSnowflakeContract(DestinationContract):
    @pytest.fixture(autouse=True)
    def _emulator(self, request: pytest.FixtureRequest) -> Iterator[None]:
        if request.node.name.startswith("test_secrets"):
            yield  # the real connector, against an account nobody answers for
            return
        yield from fake_snowflake.__wrapped__(request)  # type: ignore[attr-defined]

    def make_destination(self) -> Destination:
        return destination()

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(query, f'SELECT * FROM "{DATABASE}"."{SCHEMA}"."{table}"')
        if table == HISTORY:  # its columns are unquoted: Snowflake upper-cases them
            return [{k.lower(): v for k, v in r.items()} for r in rows]
        return rows

    async def refusal(self, destination: Destination) -> Refusal | None:
        # Snowflake enforces no primary key, only NOT NULL: the refused row has a NULL name.
        dialect = destination.dialect
        columns = [dialect.column_for("id", pa.int64()), dialect.column_for("name", pa.string())]
        ddl = dialect.create_table_ddl("refusals", columns, []).replace('"name" VARCHAR', '"name" VARCHAR NOT NULL')
        async with destination.transaction() as tx:
            await tx.run_ddl(ddl)
        return Refusal("refusals", [{"id": 1, "name": "first"}],
                       [{"id": 2, "name": "two"}, {"id": 3, "name": None}, {"id": 4, "name": "four"}], 1,
                       screened=True)

    def secret_cases(self) -> Sequence[SecretCase]:
        secret = f"Contract-{uuid.uuid4().hex[:8]}-p@ss:w/rd"
        return [SecretCase(lambda: destination(account=f"conduitd-nowhere-{uuid.uuid4().hex[:6]}", password=secret,
                                               connect_timeout=3), secret)]


def test_an_upsert_keeps_the_columns_a_batch_lacks_like_a_merge(fake_snowflake: None) -> None:
    """Snowflake's upsert is a delete and a load: the values of columns the batch does not carry
    are read first and loaded again with the replaced rows (exact decimals and timestamps); new
    keys get NULL there; rows of other keys are untouched."""
    async def work() -> list[dict[str, Any]]:
        target = destination()
        await target.open()
        try:
            pipeline = PipelineConfig(name="kept", source="s", destination="d", table="kept", mode="upsert",
                                      unique_key=["id"])
            await target.setup(pipeline)
            committer = Committer(target, pipeline)
            when = dt.datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
            first = [{"id": i, "name": f"n{i}", "note": f"note {i}", "amount": decimal.Decimal(f"{i}.05"), "at": when}
                     for i in (1, 2, 3)]
            await committer.commit(await committer.prepare(scenario.batch(scenario.chunk("p0", None, {"o": 3}, first))))
            second = [{"id": 3, "name": "n3 again"}, {"id": 9, "name": "new"}, {"id": 1, "name": "n1 again"}]
            await committer.commit(await committer.prepare(
                scenario.batch(scenario.chunk("p0", {"o": 3}, {"o": 6}, second))))
        finally:
            await target.close()
        return await asyncio.to_thread(query, f'SELECT * FROM "{DATABASE}"."{SCHEMA}"."kept" ORDER BY "id"')

    rows = asyncio.run(work())
    assert [(r["id"], r["name"], r["note"], r["amount"]) for r in rows] == [
        (1, "n1 again", "note 1", decimal.Decimal("1.05")), (2, "n2", "note 2", decimal.Decimal("2.05")),
        (3, "n3 again", "note 3", decimal.Decimal("3.05")), (9, "new", None, None)]
    assert {r["at"].astimezone(dt.UTC) for r in rows if r["id"] != 9} == {
        dt.datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)}


def test_a_batch_reads_the_catalog_once_and_again_after_its_ddl(fake_snowflake: None) -> None:
    """information_schema is read once per table and transaction (each read is a metadata query on
    Snowflake), and again after the batch's own DDL: a column added by schema evolution is written."""
    from conduitd.destinations.snowflake.driver import SnowflakeDriver

    catalog_reads: list[str] = []
    fetch = SnowflakeDriver.fetch

    async def counting(self: SnowflakeDriver, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "information_schema.columns" in sql:
            catalog_reads.append(sql)
        return await fetch(self, sql, *args, **kwargs)

    async def work() -> tuple[list[int], list[dict[str, Any]]]:
        target = destination()
        await target.open()
        per_batch = []
        try:
            pipeline = PipelineConfig(name="cached", source="s", destination="d", table="cached", mode="upsert",
                                      unique_key=["id"])
            await target.setup(pipeline)
            committer = Committer(target, pipeline)
            batches = [[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                       [{"id": 2, "name": "b2"}, {"id": 3, "name": "c"}],
                       [{"id": 3, "name": "c2", "extra": "new column"}]]
            for n, records in enumerate(batches):
                before = len(catalog_reads)
                await committer.commit(await committer.prepare(
                    scenario.batch(scenario.chunk("p0", {"o": n} if n else None, {"o": n + 1}, records))))
                per_batch.append(len(catalog_reads) - before)
        finally:
            await target.close()
        table = f'"{DATABASE}"."{SCHEMA}"."cached"'
        return per_batch, await asyncio.to_thread(query, f'SELECT * FROM {table} ORDER BY "id"')

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SnowflakeDriver, "fetch", counting)
        per_batch, rows = asyncio.run(work())
    assert [(r["id"], r["name"], r["extra"]) for r in rows] == [
        (1, "a", None), (2, "b2", None), (3, "c2", "new column")]
    # One read when the batch is prepared (schema evolution), then columns and limits once each in
    # the transaction (it was five: every step of the upsert asked again).
    assert per_batch[1] == 3, f"a batch without DDL: {per_batch}"
    assert per_batch[2] <= 4, f"read again after the ADD COLUMN, once each: {per_batch}"
