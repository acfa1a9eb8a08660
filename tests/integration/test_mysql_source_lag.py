"""The lag window of the MySQL/MariaDB polling source (`incremental.lag_seconds`, issue 10): a row
committed after a poll with an application timestamp older than the high water still arrives (and
is missed without the window); re-reads leave one row per key; runs that read the window again
leave one DLQ entry per rejected row (a MariaDB destination's DLQ table); validate reports the
window. Timestamps are hours old, so the late-commit bound (server-wide, one second's margin)
never holds these rows back."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import asyncpg

from tests.integration.test_mysql_source import (
    HOST,
    PORT_NUMBER,
    my,
    my_database,
    my_run,
    once,
    rows,
    table,
    write_config,
)

__all__ = ["my", "my_database", "table"]  # fixtures shared with the source's tests


async def test_a_late_row_with_an_older_timestamp_arrives_through_the_window_only(
        my: Any, my_database: str, table: str, pg: asyncpg.Connection, pg_dsn: str, pg_schema: str,
        tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v TEXT, ts DATETIME(6) NOT NULL, KEY (ts))")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - {{name: lagged, source: db, destination: wh, source_table: {table}, table: lagged, mode: upsert,
           unique_key: [id], incremental: {{column: ts, lag_seconds: 3600}}}}
        - {{name: plain, source: db, destination: wh, source_table: {table}, table: plain, mode: upsert,
           unique_key: [id], incremental: {{column: ts}}}}
        """)
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, 'a', NOW(6) - INTERVAL 3 HOUR), "
                     f"(2, 'b', NOW(6) - INTERVAL 2 HOUR)")
    await once(config)

    async def ids(name: str) -> list[int]:
        return [int(r["id"]) for r in await rows(pg, pg_schema, name)]

    assert await ids("lagged") == await ids("plain") == [1, 2]
    # Committed after that poll, stamped by the application before the high water (row 2).
    await my_run(my, f"INSERT INTO `{table}` VALUES (3, 'c', NOW(6) - INTERVAL 150 MINUTE)")
    await once(config)
    assert await ids("lagged") == [1, 2, 3]
    assert await ids("plain") == [1, 2]  # without the window the late row is missed
    await my_run(my, f"UPDATE `{table}` SET v = 'c2' WHERE id = 3")
    await my_run(my, f"INSERT INTO `{table}` VALUES (4, 'd', NOW(6) - INTERVAL 100 MINUTE)")
    await once(config)  # the window again: the unchanged rows absorbed, one row per key
    assert [(r["id"], r["v"]) for r in await rows(pg, pg_schema, "lagged")] == [
        (1, "a"), (2, "b"), (3, "c2"), (4, "d")]
    position = await pg.fetchval(f'SELECT position->\'key\' FROM "{pg_schema}".conduitd_checkpoints '
                                 "WHERE pipeline = 'lagged'")
    assert position == '["4"]'  # the high water, not where the window's re-read ended


def mariadb_config(tmp_path: Path, database: str, pipeline: str) -> Path:
    """Source and destination in the same MariaDB database (the DLQ table too: its text compares
    without regard to case, which the DLQ's check for an entry held already must not)."""
    path = tmp_path / "conduitd.yaml"
    path.write_text(textwrap.dedent(f"""\
        sources:
          - {{name: db, type: mysql, host: {HOST}, port: {PORT_NUMBER}, user: root, database: {database}}}
        destinations:
          - {{name: wh, type: mysql, host: {HOST}, port: {PORT_NUMBER}, user: root, database: {database}}}
        resources:
        """) + textwrap.indent(textwrap.dedent(pipeline), "  "))
    return path


async def test_runs_rereading_the_window_leave_one_dlq_entry_per_rejected_row_and_a_new_reject_lands(
        my: Any, my_database: str, table: str, tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v TEXT, note TEXT, d DATETIME NULL, "
                     "ts DATETIME(6) NOT NULL, KEY (ts))")
    config = mariadb_config(tmp_path, my_database, f"""\
        - {{name: lagged, source: db, destination: wh, source_table: {table}, table: {table}_dst, mode: upsert,
           unique_key: [id], incremental: {{column: ts, lag_seconds: 3600}},
           quality_checks: [{{column: v, check: not_null}}]}}
        """)
    await my_run(my, "SET SESSION sql_mode = ''")  # a zero date may be written: it does not decode
    # Row 2 fails the rule, row 3 does not decode: both within the window below row 4.
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, 'a', NULL, NULL, NOW(6) - INTERVAL 170 MINUTE), "
                     f"(2, NULL, NULL, NULL, NOW(6) - INTERVAL 150 MINUTE), "
                     f"(3, 'c', 'zero date', '0000-00-00 00:00:00', NOW(6) - INTERVAL 140 MINUTE), "
                     f"(4, 'd', NULL, NULL, NOW(6) - INTERVAL 120 MINUTE)")

    async def dlq() -> list[tuple[str, str]]:
        return sorted((str(r), str(p)) for r, p in await my_run(my, f"SELECT rule, payload FROM `{table}_dst_dlq`"))

    await once(config)
    first = await dlq()
    assert [rule for rule, _ in first] == ["decode", "not_null:v"], first
    await once(config)  # reads the window again: the same two rejects, not added again
    assert await dlq() == first
    # A rejected row committed late within the window lands once; so does row 3 changed in case
    # only (its cursor unchanged): a different payload is a different entry.
    await my_run(my, f"INSERT INTO `{table}` VALUES (5, NULL, NULL, NULL, NOW(6) - INTERVAL 130 MINUTE)")
    await my_run(my, f"UPDATE `{table}` SET note = 'ZERO DATE' WHERE id = 3")
    await once(config)
    await once(config)
    entries = await dlq()
    assert len(entries) == 4 and set(first) < set(entries), entries
    assert any('"ZERO DATE"' in p for _, p in entries) and any('"id": 5' in p or '"id":5' in p for _, p in entries)
    assert [int(i) for (i,) in await my_run(my, f"SELECT id FROM `{table}_dst` ORDER BY id")] == [1, 4]


async def test_validate_reports_the_window(my: Any, my_database: str, table: str, pg_dsn: str, pg_schema: str,
                                           tmp_path: Path) -> None:
    await my_run(my, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL, KEY (ts))")
    await my_run(my, f"INSERT INTO `{table}` VALUES (1, NOW(6) - INTERVAL 5 HOUR), (2, NOW(6) - INTERVAL 150 MINUTE), "
                     f"(3, NOW(6) - INTERVAL 2 HOUR)")
    config = write_config(tmp_path, my_database, pg_dsn, pg_schema, f"""\
        - {{name: lagged, source: db, destination: wh, source_table: {table}, table: lagged, mode: upsert,
           unique_key: [id], incremental: {{column: ts, lag_seconds: 3600}}}}
        """)

    async def window() -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "validate", "--json", "-c",
                                                       str(config), stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        found = {c["check"]: (c["status"], c["detail"]) for c in json.loads(out or b"[]")}
        assert "source: lag window" in found, (found, err.decode())
        return found["source: lag window"]

    status, detail = await window()
    assert status == "ok" and detail.startswith("re-reads the last 3600 s below the committed position after each "
                                                "catch-up (nothing committed yet); upsert absorbs the re-reads")
    await once(config)
    status, detail = await window()
    assert status == "ok" and "(2 row(s) there now)" in detail, detail
