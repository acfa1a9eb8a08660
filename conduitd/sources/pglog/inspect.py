"""`conduitd validate` for a log-mode pipeline: the server setting, the publication and the slot,
and how much WAL the slot holds back (an abandoned slot fills the source's disk)."""

from __future__ import annotations

from conduitd.config import PipelineConfig
from conduitd.sources.pglog.slot import EXISTING_SQL, LAG_SQL, TRUNCATE_SQL, setup_missing, slot_name, truncate_missing
from conduitd.sources.tables.postgres import connect
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig


async def inspect(config: PostgresSourceConfig, pipeline: PipelineConfig) -> list[tuple[str, str, str]]:
    """(check, status, detail) rows: `source: slot` invalid when log mode cannot read."""
    name = slot_name(pipeline.name)
    conn = await connect(config)
    try:
        publication, slot, wal_level = await conn.fetchrow(EXISTING_SQL, name)
        missing = setup_missing(wal_level, publication, slot, name)
        if missing:
            return [("source: slot", "invalid", missing)]
        if not await conn.fetchval(TRUNCATE_SQL, name):
            return [("source: slot", "invalid", truncate_missing(name))]
        behind, confirmed = await conn.fetchrow(LAG_SQL, name)
    finally:
        await conn.close()
    return [("source: slot", "ok", f"{name} at {confirmed}, {int(behind or 0)} byte(s) of WAL held for it "
                                   f"(drop it with pg_drop_replication_slot('{name}') when the pipeline is gone)")]
