"""The lag window of the PostgreSQL polling source (`incremental.lag_seconds`, issue 10): a row
committed after a poll with an application timestamp older than the high water still arrives
(and is missed without the window), re-reads leave one row per key and the committed position at
the high water, an idle daemon's window passes write nothing and send a rejected row to the DLQ
once, runs that each read the window again leave one DLQ entry per rejected row (a new one still
lands), validate reports the window, and the window needs `mode: upsert`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from tests.helpers.api import serving, until
from tests.integration.test_postgres_source import (
    db_dsn,
    once,
    pg,
    pg_schema,
    rows,
    run,
    source_dsn,
    validate,
    write_config,
)

__all__ = ["db_dsn", "pg", "pg_schema", "source_dsn"]  # fixtures shared with the source's tests


async def ids(pg: asyncpg.Connection, schema: str, table: str) -> list[int]:
    return [int(r["id"]) for r in await rows(pg, schema, table)]


async def test_a_late_row_with_an_older_timestamp_arrives_through_the_window_only(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz NOT NULL)")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: lagged, source: db, destination: wh, source_table: src, table: lagged, mode: upsert,
           unique_key: [id], incremental: {column: ts, lag_seconds: 600}}
        - {name: plain, source: db, destination: wh, source_table: src, table: plain, mode: upsert,
           unique_key: [id], incremental: {column: ts}}
        """)
    await pg.execute(f"INSERT INTO {src} VALUES (1, 'a', now() - interval '100 s'), (2, 'b', now() - interval '10 s')")
    await once(config)
    assert await ids(pg, pg_schema, "lagged") == await ids(pg, pg_schema, "plain") == [1, 2]
    # Committed after that poll, stamped by the application before the high water (row 2).
    await pg.execute(f"INSERT INTO {src} VALUES (3, 'c', now() - interval '50 s')")
    await once(config)
    assert await ids(pg, pg_schema, "lagged") == [1, 2, 3]
    assert await ids(pg, pg_schema, "plain") == [1, 2]  # without the window the late row is missed
    await pg.execute(f"UPDATE {src} SET v = 'a2', ts = now() - interval '5 s' WHERE id = 1")
    await once(config)  # the window is read again: absorbed by the upsert, one row per key
    assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "lagged")] == [(1, "a2"), (2, "b"), (3, "c")]
    # The committed position is the high water (row 1 now), not where the window's re-reads ended.
    same = ("SELECT (c.position->>'cursor')::timestamptz = s.ts AND c.position->'key' = '[\"1\"]' "
            f'FROM "{pg_schema}".conduitd_checkpoints c, {src} s WHERE c.pipeline = \'lagged\' AND s.id = 1')
    assert await pg.fetchval(same) is True


async def test_an_idle_daemon_writes_nothing_again_and_a_rejected_row_reaches_the_dlq_once(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz NOT NULL)")
    await pg.execute(f"INSERT INTO {src} VALUES (1, 'a', now() - interval '100 s'), (2, NULL, now() - interval '60 s'),"
                     f" (3, 'c', now() - interval '10 s')")
    config: dict[str, Any] = {
        "sources": [{"name": "db", "type": "postgres", "dsn": db_dsn, "schema": pg_schema, "poll_interval": 0.05}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": db_dsn, "schema": pg_schema}],
        "resources": [{"name": "lagged", "source": "db", "destination": "wh", "source_table": "src",
                       "table": "lagged", "mode": "upsert", "unique_key": ["id"], "batch": {"max_wait": 0.05},
                       "incremental": {"column": "ts", "lag_seconds": 600},
                       "quality_checks": [{"column": "v", "check": "not_null"}]}]}

    async def count(sql: str) -> int:
        try:
            return int(await pg.fetchval(sql))
        except asyncpg.UndefinedTableError:
            return -1

    async def has(sql: str, expected: int) -> bool:
        return await count(sql) == expected

    async with serving(tmp_path, config) as daemon:
        await until(partial(has, f'SELECT count(*) FROM "{pg_schema}".lagged', 2), "the first rows")
        batches: list[int] = []
        for late in (4, 5):  # each arrives through a window pass over the rejected row 2
            await pg.execute(f"INSERT INTO {src} VALUES ({late}, 'l', now() - interval '30 s')")
            await until(partial(has, f'SELECT count(*) FROM "{pg_schema}".lagged WHERE id = {late}', 1),
                        f"late row {late}")
            batches.append(int((await daemon.pipeline("admin-all", "lagged"))["batches"]))
        # Window passes between the two found nothing new: they wrote nothing (one batch per late row).
        assert batches[1] == batches[0] + 1, batches
    assert await ids(pg, pg_schema, "lagged") == [1, 3, 4, 5]
    assert await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".lagged_dlq') == 1


async def test_the_window_needs_upsert_and_a_timestamp_strategy(pg: asyncpg.Connection, db_dsn: str, pg_schema: str,
                                                                 tmp_path: Path) -> None:
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: lagged, source: db, destination: wh, source_table: src, mode: append,
           incremental: {column: ts, lag_seconds: 60}}
        """)
    code, err = await run(config)
    assert code == 2 and "lag_seconds" in err and "upsert" in err and "Traceback" not in err, err
    config.write_text(config.read_text().replace("mode: append", "mode: upsert, unique_key: [id]")
                      .replace("column: ts,", "column: ts, strategy: sequential,"))
    code, err = await run(config)
    assert code == 2 and "lag_seconds applies to strategy 'timestamp'" in err and "Traceback" not in err, err
    # No strategy named, an integer cursor: sequential, which the window does not apply to (found at the read).
    await pg.execute(f'CREATE TABLE "{pg_schema}".src (id int PRIMARY KEY, ts timestamptz)')
    config.write_text(config.read_text().replace("column: ts, strategy: sequential,", "column: id,"))
    code, err = await run(config)
    assert code == 2 and "incremental.lag_seconds needs the timestamp strategy" in err, err
    assert "Traceback" not in err, err


async def dlq(pg: asyncpg.Connection, schema: str) -> list[tuple[str, str]]:
    return [(r["rule"], r["payload"]) for r in await pg.fetch(f'SELECT rule, payload FROM "{schema}".lagged_dlq '
                                                               "ORDER BY rule, payload")]


async def test_runs_rereading_the_window_leave_one_dlq_entry_per_rejected_row_and_a_new_reject_lands(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, d date, ts timestamptz NOT NULL)")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: lagged, source: db, destination: wh, source_table: src, table: lagged, mode: upsert,
           unique_key: [id], incremental: {column: ts, lag_seconds: 600},
           quality_checks: [{column: v, check: not_null}]}
        """)
    # Row 2 fails the rule, row 3 does not decode (a date Arrow cannot hold): both within the window.
    await pg.execute(f"INSERT INTO {src} VALUES (1, 'a', NULL, now() - interval '100 s'), "
                     f"(2, NULL, NULL, now() - interval '60 s'), (3, 'c', 'infinity', now() - interval '40 s'), "
                     f"(4, 'd', NULL, now() - interval '10 s')")
    await once(config)
    first = await dlq(pg, pg_schema)
    assert [rule for rule, _ in first] == ["decode", "not_null:v"], first
    code, err = await run(config)  # reads the window again: the same two rejects, not added again
    assert code == 0 and await dlq(pg, pg_schema) == first
    assert "rows written, 0 to the DLQ" in err, err  # nor counted as sent to it
    usage = f'SELECT sum(dlq_rows) FROM "{pg_schema}".conduitd_usage WHERE pipeline = \'lagged\''
    assert await pg.fetchval(usage) == 2
    # A rejected row committed late, within the window: it lands, once, however many runs follow.
    await pg.execute(f"INSERT INTO {src} VALUES (5, NULL, NULL, now() - interval '30 s')")
    await once(config)
    await once(config)
    entries = await dlq(pg, pg_schema)
    assert len(entries) == 3 and set(first) < set(entries) and '"id":5' in entries[-1][1], entries
    assert await ids(pg, pg_schema, "lagged") == [1, 4]


async def test_validate_reports_the_window_and_where_it_cannot_work(
        pg: asyncpg.Connection, db_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    src = f'"{pg_schema}".src'
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, n int, ts timestamptz NOT NULL)")
    await pg.execute(f"INSERT INTO {src} VALUES (1, 1, now() - interval '1 day'), (2, 2, now() - interval '100 s'), "
                     f"(3, 3, now() - interval '10 s')")
    config = write_config(tmp_path, db_dsn, pg_schema, """\
        - {name: lagged, source: db, destination: wh, source_table: src, table: lagged, mode: upsert,
           unique_key: [id], incremental: {column: ts, lag_seconds: 600}}
        """)
    code, checks = await validate(config)
    found = {c["check"]: (c["status"], c["detail"]) for c in checks}
    assert code == 0 and found["source: lag window"] == (
        "ok", "re-reads the last 600 s below the committed position after each catch-up (nothing committed yet); "
              "upsert absorbs the re-reads, a rejected row there gets one DLQ entry"), checks
    await once(config)
    code, checks = await validate(config)
    found = {c["check"]: (c["status"], c["detail"]) for c in checks}
    assert found["source: lag window"][1].startswith("re-reads the last 600 s below the committed position after "
                                                     "each catch-up (2 row(s) there now)"), found
    # A DLQ file outside the destination takes a rejected row of the window again at each run.
    config.write_text(config.read_text().replace("lag_seconds: 600}", f"lag_seconds: 600}}, dlq: {{type: file, "
                                                                      f"path: {tmp_path / 'dlq.jsonl'}}}"))
    code, checks = await validate(config)
    status, detail = {c["check"]: (c["status"], c["detail"]) for c in checks}["source: lag window"]
    assert code == 0 and status == "warning" and "added to it again at each run" in detail, checks
    # An integer cursor is read sequentially: the run would refuse the window.
    config.write_text(config.read_text().replace("column: ts,", "column: n,").replace("name: lagged", "name: seq"))
    code, checks = await validate(config)
    status, detail = {c["check"]: (c["status"], c["detail"]) for c in checks}["source: lag window"]
    assert code == 2 and status == "invalid" and "needs the timestamp strategy" in detail, checks
