"""What the server must have for log-based capture, asked over a normal connection: the binary log
on, ROW format, FULL row images and metadata, and the account's replication privileges; and where
the binlog stands (`SHOW MASTER STATUS`, `SHOW BINARY LOGS`). Each missing setting says what to
set."""

from __future__ import annotations

from typing import Any

from asyncmy.errors import MySQLError

from conduitd.sources.mysqllog.position import Coordinate
from conduitd.sources.tables.mysql_errors import code_of
from conduitd.sources.tables.mysql_plan import fetch_all

SETTINGS_SQL = ("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'version')")
REQUIRED = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
_HOW = {
    "log_bin": "log_bin (log-bin = binlog in [mysqld], a restart)",
    "binlog_format": "binlog_format = ROW",
    "binlog_row_image": "binlog_row_image = FULL",
    "binlog_row_metadata": "binlog_row_metadata = FULL (MariaDB 10.5+, MySQL 8.0.1+): the log then names the columns",
}
_REPLICATION = ("REPLICATION SLAVE", "REPLICATION REPLICA", "ALL PRIVILEGES")
_MONITOR = ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER", "ALL PRIVILEGES")


async def settings(conn: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in await fetch_all(conn, SETTINGS_SQL)}


def missing_settings(found: dict[str, str]) -> list[str]:
    """What is wrong with the server's settings, each with the line that fixes it."""
    if found.get("log_bin", "OFF").upper() != "ON":
        return ["the binary log is off: set " + _HOW["log_bin"]
                + ", binlog_format = ROW, binlog_row_image = FULL, binlog_row_metadata = FULL"]
    return [f"{name} is {found.get(name, 'unset')!r}: set {_HOW[name]}"
            for name, wanted in REQUIRED.items() if found.get(name, "").upper() != wanted]


async def missing_privileges(conn: Any) -> list[str]:
    """The replication privileges the account lacks (from SHOW GRANTS)."""
    grants = " ".join(str(r[0]).upper() for r in await fetch_all(conn, "SHOW GRANTS"))
    lacking = []
    if not any(p in grants for p in _REPLICATION):
        lacking.append("REPLICATION SLAVE (to read the binlog)")
    if not any(p in grants for p in _MONITOR):
        lacking.append("BINLOG MONITOR on MariaDB, REPLICATION CLIENT on MySQL (to see where the binlog stands)")
    return lacking


async def binlog_end(conn: Any) -> Coordinate | None:
    """Where the binlog ends now (`SHOW MASTER STATUS`; `SHOW BINARY LOG STATUS` on MySQL 8.2+
    which removed the former); None when the binary log is off."""
    try:
        rows = await fetch_all(conn, "SHOW MASTER STATUS")
    except MySQLError as exc:
        if code_of(exc) != 1064:
            raise
        rows = await fetch_all(conn, "SHOW BINARY LOG STATUS")
    return Coordinate(str(rows[0][0]), int(rows[0][1])) if rows else None


async def binary_logs(conn: Any) -> list[tuple[str, int]]:
    return [(str(r[0]), int(r[1])) for r in await fetch_all(conn, "SHOW BINARY LOGS")]


async def gtid_at(conn: Any, at: Coordinate) -> str | None:
    """MariaDB's GTID position at a coordinate (`BINLOG_GTID_POS`); None elsewhere or unknown."""
    try:
        rows = await fetch_all(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (at.file, at.pos))
    except MySQLError:
        return None
    value = rows[0][0] if rows else None
    return str(value.decode() if isinstance(value, bytes) else value) if value else None
