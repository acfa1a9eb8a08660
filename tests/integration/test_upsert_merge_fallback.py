"""When an upsert's merge refuses rows without naming one and the row-by-row merge statement (a
`DO` block, `destinations/postgres/row_merge.py`) cannot run either, the writer falls back to
narrowing by halves (`runtime/isolate.py`): still exactly the refused rows go to the DLQ, every
other row is committed, each row in exactly one place (issue 8, item 18's fallback).

The DO block is made to fail as a role without USAGE on plpgsql would see it (42501): a trigger
on the table raises that error whenever it fires inside the row-by-row statement (recognised by
`current_query()`), and refuses 'DUP' names everywhere (check_violation), as the reviewer's
trigger does. Real PostgreSQL; nothing in the writer is patched."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.test_refused_rows import attempts
from tests.integration.test_upsert_merge_refusals import quote, upsert

__all__ = ["attempts"]  # the fixture, used by name

SETUP = """CREATE TABLE {s}.orders (id bigint PRIMARY KEY, name text, v bigint CHECK (v >= 0));
CREATE FUNCTION {s}.guard() RETURNS trigger LANGUAGE plpgsql AS $f$
  BEGIN
    IF current_query() LIKE '%DO $conduitd%' THEN
      RAISE insufficient_privilege USING MESSAGE = 'permission denied for language plpgsql (forced)';
    END IF;
    IF NEW.name = 'DUP' THEN RAISE check_violation USING MESSAGE = 'duplicate name'; END IF;
    RETURN NEW;
  END $f$;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON {s}.orders FOR EACH ROW EXECUTE FUNCTION {s}.guard()"""

_KINDS = st.sampled_from(["good", "good", "dup", "check"])


async def _run(spec: list[tuple[str, bool]], dsn: str, schema: str) -> tuple[tuple[int, int], dict[int, str],
                                                                                list[Any]]:
    s = quote(schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {s}.orders, {s}.orders_dlq, {s}.conduitd_checkpoints; "
                           f"DROP FUNCTION IF EXISTS {s}.guard; " + SETUP.format(s=s))
        await conn.executemany(f"INSERT INTO {s}.orders (id, name, v) VALUES ($1, 'old', 1)",
                               [(i,) for i, (_, old) in enumerate(spec) if old])
        rows = pa.table({"id": pa.array(range(len(spec)), pa.int64()),
                         "name": pa.array(["DUP" if k == "dup" else f"r{i}" for i, (k, _) in enumerate(spec)]),
                         "v": pa.array([-1 if k == "check" else 2 for k, _ in spec], pa.int64())})
        result = await upsert(dsn, schema, "orders", rows)
        table = {r["id"]: r["name"] for r in await conn.fetch(f"SELECT id, name FROM {s}.orders")}
        dlq = await conn.fetch(f"SELECT (payload::jsonb->>'id')::bigint AS id, rule, reason FROM {s}.orders_dlq")
    finally:
        await conn.close()
    return result, table, dlq


def check(spec: list[tuple[str, bool]], result: tuple[int, int], table: dict[int, str], dlq: list[Any]) -> None:
    bad = {i for i, (kind, _) in enumerate(spec) if kind != "good"}
    assert result == (len(spec) - len(bad), len(bad))
    assert sorted(r["id"] for r in dlq) == sorted(bad)  # each refused row once, and only those
    assert all(r["rule"] == "refused" and "23514" in r["reason"] for r in dlq)
    for i, (kind, old) in enumerate(spec):
        # A good row is written; a refused one leaves the table as it was (old value, or absent).
        assert table.get(i) == (f"r{i}" if kind == "good" else ("old" if old else None)), (i, kind, old)


async def test_refused_merge_rows_are_isolated_by_halves_when_the_row_merge_cannot_run(
        pg_dsn: str, pg_schema: str, attempts: list[int]) -> None:
    spec = [*[("good", False)] * 40, ("dup", False), *[("good", True)] * 30, ("check", True), *[("good", False)] * 28]
    result, table, dlq = await _run(spec, pg_dsn, pg_schema)
    check(spec, result, table, dlq)
    # One attempt when the row merge runs; here the two refused rows cost a narrowing each.
    assert len(attempts) == 1 and attempts[0] > 2, attempts


@settings(max_examples=12)
@given(spec=st.lists(st.tuples(_KINDS, st.booleans()), min_size=1, max_size=40))
def test_generated_upserts_put_each_row_in_exactly_one_place_without_the_row_merge(
        spec: list[tuple[str, bool]], pg_dsn: str, pg_schema: str) -> None:
    check(spec, *asyncio.run(_run(spec, pg_dsn, pg_schema)))
