"""The lag window of the MySQL/MariaDB polling source (`incremental.lag_seconds`, issue 10): a row
committed after a poll with an application timestamp older than the high water still arrives (and
is missed without the window); re-reads leave one row per key. Timestamps are hours old, so the
late-commit bound (server-wide, one second's margin) never holds these rows back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from tests.integration.test_mysql_source import my, my_database, my_run, once, rows, table, write_config

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
