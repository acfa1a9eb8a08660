"""The initial snapshot of a log-mode table and its binlog coordinate.

`START TRANSACTION WITH CONSISTENT SNAPSHOT` on MariaDB also fixes the binlog coordinate of that
snapshot (`Binlog_snapshot_file` / `Binlog_snapshot_position`, read in the same session): every
transaction committed before it is in the snapshot, every one after it is in the binlog after it.
So the log read from that coordinate continues the snapshot with no gap and no change twice.

The rows are read in key order, `size` at a time, by keyset queries in that one transaction (the
same snapshot for all of them), as the server's text, and become Arrow through the catalog's
types exactly as the polling source's rows do. The transaction holds the table's metadata lock
until the last block is read: an `ALTER TABLE` of it waits for the snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from conduitd.config import PipelineConfig
from conduitd.errors import ConfigError
from conduitd.sources.mysqllog.position import Coordinate
from conduitd.sources.mysqllog.server import gtid_at
from conduitd.sources.tables.cursor import Plan
from conduitd.sources.tables.mysql_catalog import position_text
from conduitd.sources.tables.mysql_plan import fetch_all
from conduitd.sources.tables.mysql_sql import select_sql


async def begin_snapshot(conn: Any, pipeline: PipelineConfig) -> tuple[Coordinate, str | None]:
    """Start the snapshot transaction on `conn`; the binlog coordinate (and GTID) it stands at."""
    await fetch_all(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    status = {str(k).lower(): str(v) for k, v in await fetch_all(conn, "SHOW STATUS LIKE 'binlog\\_snapshot\\_%%'")}
    file, position = status.get("binlog_snapshot_file", ""), status.get("binlog_snapshot_position", "")
    if not file or not position.isdigit():
        await fetch_all(conn, "ROLLBACK")
        raise ConfigError(f"pipeline {pipeline.name!r}: mode log needs the binlog coordinate of a consistent "
                          "snapshot (MariaDB's Binlog_snapshot_file status): this server has none (MySQL is not "
                          "supported for the initial snapshot; is the binary log on?)")
    at = Coordinate(file, int(position))
    return at, await gtid_at(conn, at)


async def read_blocks(conn: Any, plan: Plan, after: list[str] | None,
                      size: int) -> AsyncIterator[tuple[list[tuple[Any, ...]], list[str] | None]]:
    """Blocks of up to `size` rows (server text) after the key texts `after`, each with the key of
    its last row; the last block is shorter than `size` (possibly empty)."""
    names = [c.name for c in plan.columns]
    at_key = [names.index(k.name) for k in plan.key]
    while True:
        sql, args = select_sql(plan, {"key": after} if after is not None else None, None, size)
        rows = await fetch_all(conn, sql, tuple(args))
        if rows:
            after = [position_text(plan.key[i], rows[-1][j]) for i, j in enumerate(at_key)]
        if len(rows) < size:
            await fetch_all(conn, "COMMIT")  # the table's metadata lock goes before the rows do
            yield rows, after
            return
        yield rows, after
