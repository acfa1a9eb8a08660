"""The MySQL/MariaDB table source as the registry sees it (`registry._BUILTINS["source"]`).
Importing this module imports no driver; the factory and the check import the source (and
asyncmy) when called."""

from __future__ import annotations

from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.errors import ConfigError
from conduitd.registry import Connector, SourceOptions
from conduitd.sources.base import Source
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig


def _mysql_source(config: MysqlSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.tables.mysql import mysql_source

    if options.pipeline is None:
        raise ConfigError(f"source {config.name!r}: a database source reads for one pipeline")
    if config.mode == "log":
        from conduitd.sources.mysqllog import MysqlLogSource

        return MysqlLogSource(config, options.pipeline, once=options.once, max_rows=options.max_rows,
                              deletes=options.tombstones, unreachable_after=options.unreachable_after)
    return mysql_source(config, options.pipeline, once=options.once, max_rows=options.max_rows,
                        unreachable_after=options.unreachable_after)


async def _check_mysql(config: MysqlSourceConfig) -> str:
    """The server's version, and whether the late-commit guard can see other transactions."""
    from conduitd.sources.tables.mysql import connect

    conn = await connect(config)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT VERSION()")
            (version,), = await cursor.fetchall()
            if config.mode == "log":  # no cursor, no guard: `inspect` checks the binlog's settings
                guard = "reading the binlog (mode log)"
            else:
                guard = await _guard(cursor)
    finally:
        conn.close()
    kind = "MariaDB" if "mariadb" in str(version).lower() else "MySQL"
    return f"{kind} {version} at {config.connect_params.where()}; {guard}"


async def _guard(cursor: Any) -> str:
    """Whether the late-commit guard can see other sessions' transactions."""
    from asyncmy.errors import MySQLError

    from conduitd.sources.tables.mysql_errors import NO_PRIVILEGE, code_of

    try:
        await cursor.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        await cursor.fetchall()
        return "the late-commit guard sees other sessions' transactions"
    except MySQLError as exc:
        if code_of(exc) not in NO_PRIVILEGE:
            raise
        return "the late-commit guard is OFF (the user lacks the PROCESS privilege)"


async def _inspect_mysql(config: MysqlSourceConfig, pipeline: PipelineConfig,
                         positions: dict[str, Position]) -> list[tuple[str, str, str]]:
    if config.mode == "log":
        from conduitd.sources.mysqllog.inspect import inspect as inspect_log

        return await inspect_log(config, pipeline, positions)
    from conduitd.sources.tables.mysql_inspect import inspect

    return await inspect(config, pipeline, positions)


MYSQL = Connector(type="mysql", kind="source", config_model=MysqlSourceConfig, factory=_mysql_source,
                  check=_check_mysql, inspect=_inspect_mysql, capabilities=("deletes", "key_scan", "leases"),
                  requires=("asyncmy",), extra="mysql",
                  description="MySQL or MariaDB tables or queries, polled with a cursor safe against late commits "
                              "(or every change from the ROW binlog: mode log)")
