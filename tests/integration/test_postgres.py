"""The PostgreSQL destination against the real server: rows, DLQ and checkpoints in one transaction."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig, PostgresDestinationConfig
from conduitd.core.records import Batch, Chunk, Reject
from conduitd.core.schema import Column
from conduitd.destinations.postgres import PostgresDestination, describe_dsn
from conduitd.destinations.postgres.dialect import Payload
from conduitd.destinations.postgres.driver import PostgresDriver
from conduitd.destinations.postgres.transaction import PostgresTransaction
from conduitd.destinations.sql import Bookkeeping
from conduitd.errors import CheckpointConflict, DependencyUnreachable, SchemaIncompatible, TransientError
from conduitd.runtime.batching import build_batch
from conduitd.runtime.commit import commit_batch
from tests.helpers.private_pg import create_private_postgres


def destination(dsn: str, schema: str) -> PostgresDestination:
    return PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}))


def pipeline(**extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "orders", "source": "s", "destination": "pg", **extra})


def batch(rows: list[dict[str, Any]], start: int | None, end: int, partition: str = "p",
          rejects: tuple[Reject, ...] = ()) -> Batch:
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    start_pos = None if start is None else {"offset": start}
    return build_batch([Chunk(partition, start_pos, {"offset": end}, table, rejects, 1)])


async def commit(dest: Any, res: PipelineConfig, b: Batch) -> Any:
    """Prepare and commit one batch, as the pipeline does."""
    return await commit_batch(dest, res, b)


@pytest.fixture
async def dest(pg_dsn: str, pg_schema: str) -> Any:
    d = destination(pg_dsn, pg_schema)
    await d.open()
    yield d
    await d.close()


async def rows_of(pg: asyncpg.Connection, schema: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    return [dict(r) for r in await pg.fetch(f'SELECT * FROM "{schema}"."{table}" ORDER BY {order}')]


async def test_append_writes_rows_and_checkpoint_in_one_transaction(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], None, 20))
    await commit(dest, res, batch([{"id": 3, "name": "c"}], 20, 30))
    assert await rows_of(pg, pg_schema, "orders") == [
        {"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    assert await dest.load_checkpoints("orders") == {"p": {"offset": 30}}


async def test_upsert_merges_by_key_and_the_last_row_in_a_batch_wins(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline(mode="upsert", unique_key=["id"])
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "a2"}], None, 3))
    await commit(dest, res, batch([{"id": 2, "v": "b2"}, {"id": 3, "v": "c"}], 3, 5))
    assert await rows_of(pg, pg_schema, "orders") == [
        {"id": 1, "v": "a2"}, {"id": 2, "v": "b2"}, {"id": 3, "v": "c"}]


async def test_upsert_with_a_composite_key(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline(mode="upsert", unique_key=["tenant", "id"])
    await dest.setup(res)
    await commit(dest, res, batch([{"tenant": "x", "id": 1, "v": 1}, {"tenant": "y", "id": 1, "v": 2}], None, 1))
    await commit(dest, res, batch([{"tenant": "x", "id": 1, "v": 3}], 1, 2))
    assert await rows_of(pg, pg_schema, "orders", "tenant") == [
        {"tenant": "x", "id": 1, "v": 3}, {"tenant": "y", "id": 1, "v": 2}]


async def test_compare_and_set_refuses_a_stale_start_and_rolls_everything_back(
        dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1}], None, 10))
    stale = batch([{"id": 1}], None, 10, rejects=(Reject("p", {"offset": 5}, "bad", "x"),))
    with pytest.raises(CheckpointConflict, match="another writer"):
        await commit(dest, res, stale)
    other = batch([{"id": 2}], 5, 12)  # a start that is not the stored position
    with pytest.raises(CheckpointConflict):
        await commit(dest, res, other)
    assert await rows_of(pg, pg_schema, "orders") == [{"id": 1}]
    assert await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".orders_dlq') == 0
    assert await dest.load_checkpoints("orders") == {"p": {"offset": 10}}


async def test_auto_created_column_types(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    rows = [{"i": 1, "f": 1.5, "s": "x", "b": True, "ts": "2026-01-01T00:00:00Z", "naive": "2026-01-01 00:00:00",
             "doc": {"a": [1, 2]}, "tags": ["a"], "nothing": None}]
    table = pa.Table.from_pylist(rows).set_column(5, "naive", pa.array([None], pa.timestamp("s")))
    await commit(dest, res, build_batch([Chunk("p", None, {"offset": 1}, table, (), 1)]))
    types = dict(await pg.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = 'orders'", pg_schema))
    assert types == {"i": "bigint", "f": "double precision", "s": "text", "b": "boolean",
                     "ts": "timestamp with time zone", "naive": "timestamp without time zone",
                     "doc": "jsonb", "tags": "jsonb", "nothing": "text"}
    (row,) = await rows_of(pg, pg_schema, "orders", "i")
    assert row["doc"] == '{"a": [1, 2]}' and row["tags"] == '["a"]'


async def test_refused_rows_are_isolated_and_the_rest_commits(dest: Any, pg: Any, pg_schema: str) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".orders (id bigint PRIMARY KEY, n smallint CHECK (n >= 0), '
                     "amount numeric(6,2) NOT NULL)")
    res = pipeline(schema_evolution={"on_type_change": "warn"})  # no widening: the server refuses
    await dest.setup(res)
    rows = [{"id": 1, "n": 1, "amount": 1.5}, {"id": 2, "n": 99999, "amount": 2.0},
            {"id": 3, "n": -5, "amount": 3.0}, {"id": 4, "n": 4, "amount": None},
            {"id": 5, "n": 5, "amount": 3703.6}, {"id": 6, "n": 6, "amount": 12345.678}]
    result = await commit(dest, res, batch(rows, None, 6))
    assert await rows_of(pg, pg_schema, "orders") == [
        {"id": 1, "n": 1, "amount": Decimal("1.50")}, {"id": 5, "n": 5, "amount": Decimal("3703.60")}]
    dlq = await pg.fetch(f'SELECT rule, reason, payload FROM "{pg_schema}".orders_dlq ORDER BY payload')
    assert [r["payload"] for r in dlq] == [
        '{"id":2,"n":99999,"amount":2.0}', '{"id":3,"n":-5,"amount":3.0}',
        '{"id":4,"n":4,"amount":null}', '{"id":6,"n":6,"amount":12345.678}']
    reasons = " | ".join(r["reason"] for r in dlq)
    assert "smallint" in reasons and "23514" in reasons and "23502" in reasons
    assert result.rows_written == 2 and result.dlq_rows == 4
    assert await dest.load_checkpoints("orders") == {"p": {"offset": 6}}


async def test_values_that_do_not_cast_go_to_the_dlq_with_column_and_value(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1}], None, 1))
    await commit(dest, res, batch([{"id": "2"}, {"id": "two"}], 1, 3))
    assert await rows_of(pg, pg_schema, "orders") == [{"id": 1}, {"id": 2}]
    (dlq,) = await pg.fetch(f'SELECT rule, column_name, value, position, partition FROM "{pg_schema}".orders_dlq')
    assert (dlq["rule"], dlq["column_name"], dlq["value"], dlq["partition"]) == ("cast", "id", "two", "p")


async def test_new_columns_are_added_as_nullable(dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    await commit(dest, res, batch([{"id": 1}], None, 1))
    result = await commit(dest, res, batch([{"id": 2, "extra": "x"}], 1, 2))
    assert result.changes and "ADD COLUMN" in (result.changes[0].ddl or "")
    assert await rows_of(pg, pg_schema, "orders") == [{"id": 1, "extra": None}, {"id": 2, "extra": "x"}]


async def test_identifiers_from_data_are_quoted(dest: Any, pg: Any, pg_schema: str) -> None:
    await pg.execute(f'CREATE TABLE "{pg_schema}".victim (x int)')
    evil = 'a"; DROP TABLE victim; --'
    res = pipeline(table='t"; DROP TABLE victim; --')
    await dest.setup(res)
    await commit(dest, res, batch([{evil: 1, "spaced name": "s", "ünï": "u"}], None, 1))
    names = [r["column_name"] for r in await pg.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
        "ORDER BY ordinal_position", pg_schema, res.table_name)]
    assert names == [evil, "spaced name", "ünï"]
    assert await pg.fetchval("SELECT to_regclass($1)", f'"{pg_schema}".victim') is not None


async def test_upsert_key_missing_from_the_data_is_a_schema_error(dest: Any, pg_schema: str) -> None:
    res = pipeline(mode="upsert", unique_key=["order_id"])
    await dest.setup(res)
    with pytest.raises(SchemaIncompatible, match="order_id"):
        await commit(dest, res, batch([{"id": 1}], None, 1))


async def test_decode_rejects_and_empty_batches_still_advance_the_checkpoint(
        dest: Any, pg: Any, pg_schema: str) -> None:
    res = pipeline()
    await dest.setup(res)
    bad = Reject("p", {"offset": 4}, "not valid JSON", "{oops")
    await commit(dest, res, batch([], None, 4, rejects=(bad,)))
    assert await dest.load_checkpoints("orders") == {"p": {"offset": 4}}
    (row,) = await pg.fetch(f'SELECT rule, reason, payload, position FROM "{pg_schema}".orders_dlq')
    assert (row["rule"], row["payload"], row["position"]) == ("decode", "{oops", '{"offset": 4}')


async def test_unreachable_server_names_host_but_not_password(pg_schema: str) -> None:
    d = destination("postgresql://postgres:hunter2@127.0.0.1:1/none", pg_schema)
    with pytest.raises(DependencyUnreachable) as caught:
        await d.open()
    assert "127.0.0.1:1/none" in str(caught.value) and "hunter2" not in str(caught.value)
    assert describe_dsn("postgresql://u:pw@h:5/db") == "h:5/db"


async def test_a_table_created_concurrently_by_another_replica_is_a_retriable_error(
        dest: Any, pg: Any, pg_schema: str) -> None:
    import asyncio

    from conduitd.errors import TransientError

    res = pipeline()
    await dest.setup(res)
    other = pg  # another replica, mid-way through creating the same table
    transaction = other.transaction()
    await transaction.start()
    await other.execute(f'CREATE TABLE "{pg_schema}".orders (id bigint)')
    ours = asyncio.create_task(commit(dest, res, batch([{"id": 1}], None, 1)))
    await asyncio.sleep(0.5)  # our CREATE TABLE now waits for theirs
    await transaction.commit()
    with pytest.raises(TransientError) as failed:  # the class, not the wording: either race loser retries
        await ours
    assert failed.value.retriable
    await commit(dest, res, batch([{"id": 1}], None, 1))  # the pipeline's retry
    assert await rows_of(pg, pg_schema, "orders") == [{"id": 1}]


async def test_replicas_setting_up_a_new_schema_at_the_same_moment_all_start(pg_dsn: str, pg: Any) -> None:
    """Replicas that start together race on CREATE ... IF NOT EXISTS (the schema, the checkpoint,
    history and DLQ tables): the losers collide with the winner's just-committed catalog rows and
    must try again, not fail."""
    for _ in range(5):
        schema = f"t_race_{uuid.uuid4().hex[:8]}"
        replicas = [destination(pg_dsn, schema) for _ in range(6)]
        try:
            async def start(replica: PostgresDestination) -> None:
                await replica.open()
                await replica.setup(pipeline(dlq={"table": "orders_dlq"}))

            await asyncio.gather(*(start(r) for r in replicas))
            tables = {r["relname"] for r in await pg.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'", schema)}
            assert tables == {"conduitd_checkpoints", "conduitd_schema_history", "orders_dlq", "conduitd_usage",
                              "conduitd_audit", "conduitd_schema_decisions"}
        finally:
            for replica in replicas:
                await replica.close()
            await pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("what", ["rows", "dlq"])
async def test_a_server_stopping_mid_write_fails_the_write_instead_of_hanging(what: str) -> None:
    """asyncpg waits for the socket to drain between the messages of a COPY (rows) or of an
    executemany (DLQ rows) and is not woken when the connection drops meanwhile; the write must
    fail (and be retried), not wait forever. 400 MB each: still being sent when the server stops."""
    server = create_private_postgres()
    try:
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE t (a text); CREATE TABLE t_dlq (id bigserial, pipeline text, "
                           "partition text, position jsonb, rule text, reason text, column_name text, value text, "
                           "payload text)")
        driver = PostgresDriver(conn, "public")
        tx = PostgresTransaction(Bookkeeping(driver), driver)
        if what == "rows":
            payload = Payload((b"x" * 1000 + b"\n") * 400_000, "csv")
            operation = tx.write_rows("t", pa.table({"a": pa.array([], pa.string())}),
                                      [Column("a", pa.string(), "text")], (), payload)
        else:
            rejects = [Reject("p", {"offset": i}, "bad", "y" * 20_000) for i in range(20_000)]
            operation = tx.write_rejects("t_dlq", "events", rejects)
        write = asyncio.ensure_future(operation)
        await asyncio.sleep(0.5)
        assert not write.done()
        await asyncio.to_thread(server.stop)
        # Which of two equivalent errors arrives first depends on timing (our watch seeing the
        # closed connection, or asyncpg's 08003 "connection was closed in the middle of
        # operation"): both are translated at the boundary into one retriable class.
        with pytest.raises(TransientError) as failed:
            await asyncio.wait_for(write, 20)
        assert failed.value.retriable
    finally:
        server.remove()
