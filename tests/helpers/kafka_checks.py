"""What the Kafka tests look at in PostgreSQL while daemons run: the rows of `events`, the
committed offsets, and a log of every checkpoint move (to catch one that goes backwards)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def count_rows(pg: Any, schema: str) -> int:
    try:
        return int(await pg.fetchval(f'SELECT count(*) FROM "{schema}".events'))
    except asyncpg.UndefinedTableError:
        return 0


async def checkpoints(pg: Any, schema: str, pipeline: str = "events") -> dict[str, int]:
    """partition -> committed offset ({} before the first commit)."""
    try:
        rows = await pg.fetch(f'SELECT partition, position::text FROM "{schema}".conduitd_checkpoints '
                              "WHERE pipeline = $1", pipeline)
    except asyncpg.UndefinedTableError:
        return {}
    return {r["partition"]: int(json.loads(r["position"])["offset"]) for r in rows}


async def record_checkpoint_moves(pg: Any, schema: str) -> None:
    """Log every checkpoint UPDATE (old and new offset) in a table of the test's schema."""
    await pg.execute(f"""
        CREATE TABLE "{schema}".checkpoint_moves (
            id bigserial PRIMARY KEY, partition text, old_offset bigint, new_offset bigint);
        CREATE FUNCTION "{schema}".log_checkpoint_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            INSERT INTO "{schema}".checkpoint_moves (partition, old_offset, new_offset)
            VALUES (NEW.partition, (OLD.position->>'offset')::bigint, (NEW.position->>'offset')::bigint);
            RETURN NEW; END $$;
        CREATE TRIGGER log_checkpoint_move AFTER UPDATE ON "{schema}".conduitd_checkpoints
            FOR EACH ROW EXECUTE FUNCTION "{schema}".log_checkpoint_move();""")
