"""conduitd's own ClickHouse tables and the statements on them outside the batch flush:
checkpoints, the batch log, the DLQ and the schema history.

    conduitd_checkpoints    ReplacingMergeTree(version) ORDER BY (pipeline, partition): the last
                            version of each partition's row is its position; `batch` names the
                            batch that stored it (how recovery tells a committed batch)
    conduitd_batches        ReplacingMergeTree(version) ORDER BY (pipeline, batch): each flushed
                            batch's tables and state, `open` -> `done` or `aborted`
    conduitd_schema_history MergeTree ORDER BY id, the columns every SQL destination has
    DLQ tables              ReplacingMergeTree(_conduitd_version, _conduitd_deleted) ORDER BY id:
                            a replayed DLQ row is a newer version flagged deleted

Readers of the checkpoints and the DLQ use FINAL.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from conduitd.core.records import Position
from conduitd.destinations.base import CheckpointRow, DlqEntry, DlqFilter
from conduitd.destinations.clickhouse.client import Client
from conduitd.destinations.clickhouse.dialect import BATCH, DELETED, VERSION, literal, quote
from conduitd.destinations.dlq_rereads import Identity

log = logging.getLogger(__name__)

CHECKPOINTS = "conduitd_checkpoints"
BATCHES = "conduitd_batches"
HISTORY = "conduitd_schema_history"
_NOW = "DateTime64(6, 'UTC')"


def _meta() -> str:
    return f"{BATCH} String, {VERSION} UInt64, {DELETED} UInt8 DEFAULT 0"


class Books:
    """See the module docstring; `database` is the destination's (tables are qualified with it)."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(name)}"

    async def create_tables(self) -> None:
        await self.client.command(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        await self.client.command(
            f"CREATE TABLE IF NOT EXISTS {self.table(CHECKPOINTS)} (pipeline String, `partition` String, "
            f"position String, batch String, version UInt64, updated_at {_NOW}) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY (pipeline, `partition`)")
        await self.client.command(
            f"CREATE TABLE IF NOT EXISTS {self.table(BATCHES)} (pipeline String, batch String, "
            f"tables Array(String), state LowCardinality(String), version UInt64, at {_NOW}) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY (pipeline, batch)")
        await self.client.command(
            f"CREATE TABLE IF NOT EXISTS {self.table(HISTORY)} (id UInt64, applied_at {_NOW}, pipeline String, "
            "table_name String, `change` String, column_name Nullable(String), old_definition Nullable(String), "
            f"new_definition Nullable(String), ddl Nullable(String), applied Bool, {BATCH} String) "
            "ENGINE = MergeTree ORDER BY id")

    async def create_dlq_table(self, name: str) -> None:
        await self.client.command(
            f"CREATE TABLE IF NOT EXISTS {self.table(name)} (id UInt64, pipeline String, "
            "`partition` Nullable(String), position Nullable(String), rule String, reason String, "
            "column_name Nullable(String), value Nullable(String), payload Nullable(String), "
            f"created_at {_NOW}, {_meta()}) "
            f"ENGINE = ReplacingMergeTree({VERSION}, {DELETED}) ORDER BY id")

    async def table_exists(self, name: str) -> bool:
        rows = await self.client.rows(f"SELECT 1 FROM system.tables WHERE database = {literal(self.database)} "
                                      f"AND name = {literal(name)}")
        return bool(rows)

    async def replaces_rows(self, name: str) -> bool:
        """Whether the table keeps one row per key (a ReplacingMergeTree, as conduitd creates for a key)."""
        rows = await self.client.rows(f"SELECT engine FROM system.tables WHERE database = {literal(self.database)} "
                                      f"AND name = {literal(name)}")
        return bool(rows) and "ReplacingMergeTree" in str(rows[0][0])

    # -- checkpoints ---------------------------------------------------------------------------

    async def stored(self, pipeline: str, partition: str) -> tuple[str, int] | None:
        """(position as JSON text, version) stored for the partition, or None."""
        rows = await self.client.rows(
            f"SELECT position, version FROM {self.table(CHECKPOINTS)} FINAL "
            f"WHERE pipeline = {literal(pipeline)} AND `partition` = {literal(partition)}")
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        if not await self.table_exists(CHECKPOINTS):
            return []  # opened read-only where nothing was ever committed
        where = f" WHERE pipeline = {literal(pipeline)}" if pipeline else ""
        rows = await self.client.rows(
            f"SELECT pipeline, `partition`, position, updated_at FROM {self.table(CHECKPOINTS)} FINAL{where} "
            "ORDER BY pipeline, `partition`")
        return [CheckpointRow(str(r[0]), str(r[1]), orjson.loads(r[2]), _utc(r[3])) for r in rows]

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {row.partition: row.position for row in await self.list_checkpoints(pipeline)}

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        if not await self.table_exists(CHECKPOINTS):
            return 0
        where = f"pipeline = {literal(pipeline)}"
        if partition is not None:
            where += f" AND `partition` = {literal(partition)}"
        count = await self.client.rows(f"SELECT count() FROM {self.table(CHECKPOINTS)} FINAL WHERE {where}")
        if count[0][0]:
            await self.client.command(f"DELETE FROM {self.table(CHECKPOINTS)} WHERE {where}")
        return int(count[0][0])

    # -- the DLQ -------------------------------------------------------------------------------

    async def live_rejects(self, dlq_table: str, ids: list[int]) -> list[int]:
        """Which of `ids` are DLQ rows now (not replayed)."""
        if not ids:
            return []
        rows = await self.client.rows(f"SELECT id FROM {self.table(dlq_table)} FINAL "
                                      f"WHERE id IN ({', '.join(str(int(i)) for i in ids)})")
        return [int(r[0]) for r in rows]

    async def stored_rejects(self, dlq_table: str, pipeline: str, payloads: list[str]) -> list[Identity]:
        """The pipeline's DLQ rows now (not replayed) with one of `payloads` (`dlq_rereads`)."""
        found: list[Identity] = []
        for start in range(0, len(payloads), 500):
            listed = ", ".join(literal(p) for p in payloads[start:start + 500])
            found += [(r[0], r[1], r[2], r[3]) for r in await self.client.rows(
                f"SELECT `partition`, rule, reason, payload FROM {self.table(dlq_table)} FINAL "
                f"WHERE pipeline = {literal(pipeline)} AND payload IN ({listed})")]
        return found

    async def read_dlq(self, dlq_table: str, pipeline: str, where: DlqFilter) -> list[DlqEntry]:
        if not await self.table_exists(dlq_table):
            return []
        sql = (f"SELECT id, pipeline, `partition`, position, rule, reason, column_name, value, payload, created_at "
               f"FROM {self.table(dlq_table)} FINAL WHERE pipeline = {literal(pipeline)}")
        if where.rule is not None:
            sql += f" AND rule = {literal(where.rule)}"
        for op, when in ((">=", where.since), ("<", where.until)):
            if when is not None:
                sql += f" AND created_at {op} toDateTime64({literal(_utc_text(when))}, 6, 'UTC')"
        sql += " ORDER BY id" + (f" LIMIT {int(where.limit)}" if where.limit else "")
        return [DlqEntry(int(r[0]), r[1], r[2], orjson.loads(r[3]) if r[3] else None, r[4], r[5], r[6], r[7], r[8],
                         _utc(r[9])) for r in await self.client.rows(sql)]

    # -- the batch log and recovery --------------------------------------------------------------

    async def log_batch(self, pipeline: str, batch: str, tables: list[str], state: str, version: int) -> None:
        names = "[" + ", ".join(literal(t) for t in tables) + "]"
        await self.client.command(
            f"INSERT INTO {self.table(BATCHES)} (pipeline, batch, tables, state, version, at) VALUES "
            f"({literal(pipeline)}, {literal(batch)}, {names}, {literal(state)}, {int(version)}, now64(6))")

    async def committed(self, pipeline: str, batch: str) -> bool:
        """Whether a checkpoint the batch stored is the stored one (its commit point was reached)."""
        rows = await self.client.rows(f"SELECT count() FROM {self.table(CHECKPOINTS)} FINAL "
                                      f"WHERE pipeline = {literal(pipeline)} AND batch = {literal(batch)}")
        return bool(rows[0][0])

    async def undo(self, batch: str, tables: list[str]) -> None:
        """Delete every row the batch wrote (its rows, deletions, DLQ rows and replays, history)."""
        for name in tables:
            if await self.table_exists(name):
                await self.client.command(f"DELETE FROM {self.table(name)} WHERE {BATCH} = {literal(batch)}")

    async def recover(self, pipeline: str) -> int:
        """Settle the pipeline's batches left `open` by a failure between the flush's first insert
        and its last (a crash, a lost connection): a committed one is marked done, any other has
        its rows deleted and is marked aborted. Returns how many were aborted."""
        rows = await self.client.rows(
            f"SELECT batch, argMax(tables, version), max(version) FROM {self.table(BATCHES)} "
            f"WHERE pipeline = {literal(pipeline)} GROUP BY batch HAVING argMax(state, version) = 'open'")
        aborted = 0
        for batch, tables, version in rows:
            if await self.committed(pipeline, str(batch)):
                await self.log_batch(pipeline, str(batch), list(tables), "done", int(version) + 1)
                continue
            log.warning("a batch was interrupted before its checkpoint was stored: deleting its rows",
                        extra={"pipeline": pipeline, "batch": batch})
            await self.undo(str(batch), list(tables))
            await self.log_batch(pipeline, str(batch), list(tables), "aborted", int(version) + 1)
            aborted += 1
        return aborted


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _utc_text(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
