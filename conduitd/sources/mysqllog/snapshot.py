"""The initial snapshot of a log-mode table and its binlog coordinate.

`START TRANSACTION WITH CONSISTENT SNAPSHOT` on MariaDB also fixes the binlog coordinate of that
snapshot (`Binlog_snapshot_file` / `Binlog_snapshot_position`, read in the same session): every
transaction committed before it is in the snapshot, every one after it is in the binlog after it.
So the log read from that coordinate continues the snapshot with no gap and no change twice.
MySQL has no such status: there a brief read lock of the table stands in (`begin_snapshot`).

The rows are read in key order, `size` at a time, by keyset queries in that one transaction (the
same snapshot for all of them), as the server's text, and become Arrow through the catalog's
types exactly as the polling source's rows do. The transaction holds the table's metadata lock
until the last block is read: an `ALTER TABLE` of it waits for the snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from conduitd.errors import ConfigError
from conduitd.sources.mysqllog.position import Coordinate
from conduitd.sources.mysqllog.server import binlog_end, gtid_at
from conduitd.sources.tables.cursor import Plan
from conduitd.sources.tables.mysql_catalog import position_text
from conduitd.sources.tables.mysql_plan import fetch_all
from conduitd.sources.tables.mysql_sql import select_sql


async def begin_snapshot(conn: Any, open_locker: Callable[[], Awaitable[Any]], table: str, *,
                         use_status: bool = True) -> tuple[Coordinate, str | None]:
    """Start the snapshot transaction on `conn`; the binlog coordinate (and GTID) it stands at.
    MariaDB says it (`Binlog_snapshot_*`); elsewhere (MySQL) a second session (`open_locker`) holds
    `FLUSH TABLES <table> WITH READ LOCK` while the snapshot starts and the binlog's end is read:
    no write to the table can then fall between the two (RELOAD and LOCK TABLES privileges)."""
    if use_status:
        await fetch_all(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        status = {str(k).lower(): str(v)
                  for k, v in await fetch_all(conn, "SHOW STATUS LIKE 'binlog\\_snapshot\\_%%'")}
        file, position = status.get("binlog_snapshot_file", ""), status.get("binlog_snapshot_position", "")
        if file and position.isdigit():
            at = Coordinate(file, int(position))
            return at, await gtid_at(conn, at)
        await fetch_all(conn, "ROLLBACK")
    locker = await open_locker()
    try:
        await fetch_all(locker, "SET SESSION TRANSACTION READ WRITE")  # FLUSH is refused in a read-only one
        await fetch_all(locker, f"FLUSH TABLES {table} WITH READ LOCK")
        try:
            await fetch_all(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            end = await binlog_end(locker)
        finally:
            await fetch_all(locker, "UNLOCK TABLES")
    finally:
        locker.close()
    if end is None:
        await fetch_all(conn, "ROLLBACK")
        raise ConfigError("mode log: the server's binary log is off (SHOW MASTER STATUS is empty)")
    return end, None


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
