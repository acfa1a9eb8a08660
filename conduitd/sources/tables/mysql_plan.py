"""What a MySQL/MariaDB pipeline reads (`Plan`): the table's or query's columns with their types,
the key, the cursor and its strategy, from the catalog (and the protocol's field descriptions for a
query)."""

from __future__ import annotations

import logging
from typing import Any

from asyncmy.errors import MySQLError

from conduitd.config import IncrementalConfig, PipelineConfig
from conduitd.errors import ConfigError
from conduitd.sources.tables.catalog import SourceColumn, relation
from conduitd.sources.tables.cursor import Plan
from conduitd.sources.tables.mysql_catalog import (
    COLUMNS_SQL,
    INDEX_LEADS_SQL,
    JSON_CHECKS_SQL,
    PRIMARY_KEY_SQL,
    column,
    described,
    json_checked,
    quote,
)
from conduitd.sources.tables.mysql_errors import LOST, code_of, message
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig

log = logging.getLogger(__name__)
_TIMESTAMPS = ("datetime", "timestamp")
_INTEGERS = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")


async def fetch_all(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


async def plan_for(conn: Any, config: MysqlSourceConfig, pipeline: PipelineConfig) -> Plan:
    """What `pipeline` reads from this server: its columns, key and cursor, checked."""
    where = f"pipeline {pipeline.name!r}"
    indexed: set[str] | None = None
    if pipeline.source_table is not None:
        schema, table = relation(pipeline.source_table, config.schema_name or "")
        rows = [r for r in await fetch_all(conn, COLUMNS_SQL, (schema, table)) if r[3] == table]
        if not rows:
            raise ConfigError(f"{where}: source table {schema}.{table} does not exist "
                              f"(or user {config.connect_params.user!r} may not read it)")
        longtext = any(r[1].lower() == "longtext" for r in rows)
        json_names = await _json_columns(conn, schema, table) if longtext else set()
        columns = [column(r[0], r[1], r[2], r[0] in json_names) for r in rows]
        key_names = [r[0] for r in await fetch_all(conn, PRIMARY_KEY_SQL, (schema, table))] or list(pipeline.unique_key)
        indexed = {r[0] for r in await fetch_all(conn, INDEX_LEADS_SQL, (schema, table))}
        source = f"{quote(schema)}.{quote(table)}"
    elif pipeline.query is not None:
        source = "(" + pipeline.query.strip().rstrip(";").strip().replace("%", "%%") + ")"
        columns = await _query_columns(conn, source, where)
        key_names = list(pipeline.unique_key)
    else:
        raise ConfigError(f"{where}: a database source needs 'source_table' or 'query'")
    by_name = {c.name: c for c in columns}
    if len(by_name) != len(columns):
        raise ConfigError(f"{where}: the source has two columns of one name")
    if not key_names:
        raise ConfigError(f"{where}: the source has no primary key: set 'unique_key' to the columns that "
                          "identify a row (they order the reads)")
    missing = [k for k in key_names if k not in by_name]
    if missing:
        raise ConfigError(f"{where}: key column(s) {', '.join(map(repr, missing))} are not in the source")
    cursor = strategy = initial = None
    if pipeline.incremental is not None:
        incremental = pipeline.incremental
        if incremental.column not in by_name:
            raise ConfigError(f"{where}: incremental column {incremental.column!r} is not in the source "
                              f"(columns: {', '.join(by_name)})")
        cursor = by_name[incremental.column]
        strategy = _strategy(incremental, cursor, where)
        initial = None if incremental.initial_value is None else str(incremental.initial_value)
        if indexed is not None and cursor.name not in indexed:
            log.warning("%s: no index starts with the incremental column %r: every poll scans the table",
                        where, cursor.name, extra={"pipeline": pipeline.name})
    key = [by_name[k] for k in key_names if cursor is None or k != cursor.name] or [by_name[key_names[0]]]
    return Plan(source, columns, key, cursor, strategy, initial)


async def _json_columns(conn: Any, schema: str, table: str) -> set[str]:
    """MariaDB's JSON columns of a table (LONGTEXT with the check its JSON type adds); none on
    MySQL, whose JSON type is its own and whose catalog has no column checks to ask (1054)."""
    try:
        return json_checked(await fetch_all(conn, JSON_CHECKS_SQL, (schema, table)))
    except MySQLError as exc:
        if code_of(exc) == 1054:
            return set()
        raise


async def _query_columns(conn: Any, source: str, where: str) -> list[SourceColumn]:
    """The columns of a query's result, from the protocol's field descriptions (type, flags,
    length, scale, character set: what the cursor's public `description` leaves out)."""
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("START TRANSACTION READ ONLY")
            try:
                await cursor.execute(f"SELECT * FROM {source} AS conduitd_src LIMIT 0", ())
                fields = list(cursor._result.fields)
            finally:
                await cursor.execute("ROLLBACK")
    except MySQLError as exc:
        if code_of(exc) in LOST:
            raise
        raise ConfigError(f"{where}: the query cannot run: {message(exc)}") from None
    return [described(f.name, f.type_code, f.flags, f.length, f.scale, f.charsetnr) for f in fields]


def _strategy(incremental: IncrementalConfig, cursor: SourceColumn, where: str) -> str:
    kind, chosen = cursor.kind, incremental.strategy
    if chosen is None:
        if kind in _TIMESTAMPS:
            return "timestamp"
        if kind in _INTEGERS:
            return "sequential"
        raise ConfigError(f"{where}: incremental column {cursor.name!r} is {cursor.sql_type}: set "
                          "incremental.strategy (cursor, for any growing column without a guard against late commits)")
    if chosen == "timestamp" and kind not in _TIMESTAMPS:
        raise ConfigError(f"{where}: strategy timestamp needs a DATETIME or TIMESTAMP column; "
                          f"{cursor.name!r} is {cursor.sql_type}")
    if chosen == "sequential" and kind not in (*_INTEGERS, "decimal"):
        raise ConfigError(f"{where}: strategy sequential needs an integer column; {cursor.name!r} is {cursor.sql_type}")
    return chosen
