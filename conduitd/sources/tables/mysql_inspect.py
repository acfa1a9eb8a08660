"""What `conduitd validate` says about a pipeline reading a MySQL/MariaDB table: the plan,
whether the cursor leads an index, how far the committed position is behind the source (the
late-commit guard's visibility is in the source check line), and what the lag window
(`incremental.lag_seconds`) re-reads."""

from __future__ import annotations

from typing import Any

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.sources.tables.catalog import relation
from conduitd.sources.tables.cursor import position_finding
from conduitd.sources.tables.lag_window import window_findings
from conduitd.sources.tables.mysql import connect
from conduitd.sources.tables.mysql_catalog import INDEX_LEADS_SQL
from conduitd.sources.tables.mysql_plan import fetch_all, plan_for
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig
from conduitd.sources.tables.mysql_sql import select_sql

Finding = tuple[str, str, str]
COUNT_CAP = 10_000_000


async def inspect(config: MysqlSourceConfig, pipeline: PipelineConfig,
                  positions: dict[str, Position]) -> list[Finding]:
    conn = await connect(config)
    try:
        plan = await plan_for(conn, config, pipeline)
        keys = ", ".join(c.name for c in plan.key)
        what = f"{pipeline.source_table or 'the query'}, key ({keys})"
        findings: list[Finding] = []
        partition = "query"
        if pipeline.source_table is not None:
            schema, table = relation(pipeline.source_table, config.schema_name or "")
            partition = f"{schema}.{table}"
        if plan.cursor is None:
            findings.append(("source: read", "ok", f"{what}: read whole, once per run or per poll_interval"))
        else:
            findings.append(("source: read", "ok", f"{what}, cursor {plan.cursor.name} ({plan.strategy})"))
            if pipeline.source_table is not None:
                leading = {r[0] for r in await fetch_all(conn, INDEX_LEADS_SQL, (schema, table))}
                if plan.cursor.name in leading:
                    findings.append(("source: cursor index", "ok", f"an index starts with {plan.cursor.name!r}"))
                else:
                    findings.append(("source: cursor index", "warning",
                                     f"no index starts with {plan.cursor.name!r}: every poll scans the table "
                                     f"(ALTER TABLE ... ADD INDEX ({plan.cursor.name}, {keys}))"))
        position = positions.get(partition)
        refused = position_finding(plan, partition, position)
        if refused is not None:
            return [*findings, refused]
        after = position if isinstance(position, dict) and plan.cursor is not None else None
        sql, args = select_sql(plan, after, None, COUNT_CAP)
        (behind,), = await fetch_all(conn, f"SELECT COUNT(*) FROM ({sql}) AS conduitd_lag", tuple(args))
        shown = f"at least {COUNT_CAP:,}" if int(behind) >= COUNT_CAP else f"{int(behind):,}"
        since = "the committed position" if after is not None else "the start (nothing committed yet)"
        findings.append(("source: lag", "ok", f"{shown} row(s) after {since}"))

        async def in_window(window: dict[str, Any]) -> int:
            sql, args = select_sql(plan, window, None, COUNT_CAP)
            (found,), = await fetch_all(conn, f"SELECT COUNT(*) FROM ({sql}) AS conduitd_window", tuple(args))
            return int(found)

        return findings + await window_findings(pipeline, plan, position, in_window, COUNT_CAP)
    finally:
        conn.close()
