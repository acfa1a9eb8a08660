"""`conduitd validate` for a MySQL/MariaDB log-mode pipeline: the server's binlog settings, the
account's replication privileges, the table's key, and whether the committed binlog position is
still on the server (and how far behind it is)."""

from __future__ import annotations

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.errors import ConfigError
from conduitd.sources.mysqllog.position import bytes_behind, coordinate
from conduitd.sources.mysqllog.server import binary_logs, missing_privileges, missing_settings, settings
from conduitd.sources.tables.catalog import relation
from conduitd.sources.tables.mysql import connect
from conduitd.sources.tables.mysql_plan import plan_for
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig

Finding = tuple[str, str, str]


async def inspect(config: MysqlSourceConfig, pipeline: PipelineConfig,
                  positions: dict[str, Position]) -> list[Finding]:
    findings: list[Finding] = []
    conn = await connect(config)
    try:
        wrong = missing_settings(await settings(conn))
        findings.append(("source: binlog", "invalid", "; ".join(wrong)) if wrong
                        else ("source: binlog", "ok", "log_bin ON, ROW format, FULL row image and metadata"))
        lacking = await missing_privileges(conn)
        user = config.connect_params.user
        findings.append(("source: privileges", "invalid", f"user {user!r} lacks " + " and ".join(lacking)
                         + f": GRANT {', '.join(p.split(' (')[0].split(' on ')[0] for p in lacking)} ON *.* TO ...")
                        if lacking else ("source: privileges", "ok", "may read the binlog"))
        try:
            plan = await plan_for(conn, config, pipeline)
            findings.append(("source: table", "ok", f"{pipeline.source_table}, key "
                             f"({', '.join(c.name for c in plan.key)})"))
        except ConfigError as exc:
            findings.append(("source: table", "invalid", str(exc)))
        if pipeline.source_table is not None and not wrong and not lacking:
            partition = ".".join(relation(pipeline.source_table, config.schema_name or ""))
            position = positions.get(partition)
            if isinstance(position, dict) and "file" in position:
                behind = bytes_behind(coordinate(position), await binary_logs(conn))
                findings.append(("source: position", "invalid",
                                 f"the committed binlog file {position['file']} was purged: reset the checkpoint "
                                 f"(conduitd checkpoints reset -p {pipeline.name}) to read a new snapshot")
                                if behind is None else
                                ("source: position", "ok", f"{coordinate(position)}, {behind:,} byte(s) of binlog "
                                 "after it"))
    finally:
        conn.close()
    return findings
