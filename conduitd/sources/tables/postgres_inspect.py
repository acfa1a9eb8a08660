"""What `conduitd validate` says about a pipeline reading a PostgreSQL table: the plan (table,
key, cursor), whether the cursor leads an index, whether the account sees other sessions'
transactions (else the late-commit guard is blind to them), how far the committed position is
behind the source, and what the lag window (`incremental.lag_seconds`) re-reads."""

from __future__ import annotations

from typing import Any

import asyncpg

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.sources.tables.catalog import relation
from conduitd.sources.tables.cursor import position_finding
from conduitd.sources.tables.lag_window import window_findings
from conduitd.sources.tables.postgres import connect, plan_for
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig
from conduitd.sources.tables.postgres_sql import select_sql
from conduitd.sources.tables.watermark import timestamp_bound

Finding = tuple[str, str, str]
"""(check, status, detail) as `validate` prints them."""
COUNT_CAP = 10_000_000
"""Rows counted at most for the lag (a count is a scan)."""

_LEADS_AN_INDEX = """
SELECT c.relname FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = $1::regclass AND a.attname = $2 LIMIT 1"""
_SEES_EVERY_SESSION = """
SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
FROM pg_catalog.pg_roles WHERE rolname = current_user"""


async def inspect(config: PostgresSourceConfig, pipeline: PipelineConfig,
                  positions: dict[str, Position]) -> list[Finding]:
    conn = await connect(config)
    try:
        return await _findings(conn, config, pipeline, positions)
    finally:
        await conn.close()


async def _findings(conn: asyncpg.Connection, config: PostgresSourceConfig, pipeline: PipelineConfig,
                    positions: dict[str, Position]) -> list[Finding]:
    plan = await plan_for(conn, config, pipeline)
    keys = ", ".join(c.name for c in plan.key)
    what = f"{pipeline.source_table or 'the query'}, key ({keys})"
    findings: list[Finding] = []
    if plan.cursor is None:
        findings.append(("source: read", "ok", f"{what}: read whole, once per run or per poll_interval"))
    else:
        findings.append(("source: read", "ok", f"{what}, cursor {plan.cursor.name} ({plan.strategy})"))
        if pipeline.source_table is not None:
            index = await conn.fetchval(_LEADS_AN_INDEX, plan.source, plan.cursor.name)
            if index is None:
                findings.append(("source: cursor index", "warning",
                                 f"no index starts with {plan.cursor.name!r}: every poll scans the table "
                                 f"(CREATE INDEX ON {plan.source} ({plan.cursor.name}, {keys}))"))
            else:
                findings.append(("source: cursor index", "ok", f"index {index} starts with {plan.cursor.name!r}"))
        if plan.strategy in ("timestamp", "sequential"):
            if await conn.fetchval(_SEES_EVERY_SESSION):
                findings.append(("source: late commits", "ok", "the account sees every session's transactions"))
            else:
                findings.append(("source: late commits", "warning",
                                 "the account cannot see other roles' transactions (grant pg_read_all_stats): "
                                 "the late-commit guard is off for them"))
        if plan.strategy == "timestamp":
            _, holder = await timestamp_bound(conn)
            if holder.pid is not None and holder.age > 60:
                findings.append(("source: late commits", "warning",
                                 f"session {holder.pid} (xid {holder.xid}) has been writing for {holder.age:.0f} s: "
                                 "rows after its start wait until it ends"))
    partition = ".".join(relation(pipeline.source_table, config.db_schema)) if pipeline.source_table else "query"
    position = positions.get(partition)
    refused = position_finding(plan, partition, position)
    if refused is not None:
        return [*findings, refused]
    after = position if isinstance(position, dict) else None
    if plan.cursor is None:
        after = None  # a whole-table read starts each pass again
    sql, args = select_sql(plan, after, None, COUNT_CAP)
    behind = await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS conduitd_lag", *args)
    shown = f"at least {COUNT_CAP:,}" if behind >= COUNT_CAP else f"{behind:,}"
    since = "the committed position" if after is not None else "the start (nothing committed yet)"
    findings.append(("source: lag", "ok", f"{shown} row(s) after {since}"))

    async def in_window(window: dict[str, Any]) -> int:
        sql, args = select_sql(plan, window, None, COUNT_CAP)
        return int(await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS conduitd_window", *args))

    return findings + await window_findings(pipeline, plan, position, in_window, COUNT_CAP)
