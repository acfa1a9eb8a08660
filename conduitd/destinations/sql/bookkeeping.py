"""The bookkeeping of every SQL destination, written once: the checkpoint, DLQ and schema-history
tables, the checkpoint compare-and-set, DLQ rows written, listed and removed, checkpoints listed
and reset. Table layouts are the ones conduitd has always created, so existing databases work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from conduitd.core.records import Position, Reject, SchemaChange, position_text, stored_as
from conduitd.destinations import dlq_rereads
from conduitd.destinations.base import CheckpointRow, DlqEntry, DlqFilter
from conduitd.destinations.sql.control import ControlBooks
from conduitd.destinations.sql.driver import SqlDriver

CHECKPOINTS = "conduitd_checkpoints"
HISTORY = "conduitd_schema_history"
_IDS_PER_STATEMENT = 500  # DLQ ids (or payloads) in one statement (SQLite allows 32,766 parameters)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # MySQL's DATETIME, written in UTC (its session's time zone)
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class Bookkeeping:
    """See the module docstring; one per connection (`driver`)."""

    control = True
    """Whether the control plane's tables (`conduitd.destinations.sql.control`) are kept here."""

    def __init__(self, driver: SqlDriver) -> None:
        self.driver = driver

    def _params(self, count: int, start: int = 1) -> list[str]:
        return [self.driver.param(n) for n in range(start, start + count)]

    # -- tables --------------------------------------------------------------------------------

    def _name(self, column: str) -> str:
        """A bookkeeping column's name, quoted (`partition` and `change` are reserved in MySQL)."""
        q = self.driver.types.quote
        return f"{q}{column}{q}"

    async def create_tables(self) -> None:
        t = self.driver.types
        part, change = self._name("partition"), self._name("change")
        await self.driver.create_missing({
            CHECKPOINTS: f"CREATE TABLE IF NOT EXISTS {self.driver.table(CHECKPOINTS)} ("
            f"pipeline {t.pipeline_text} NOT NULL, {part} {t.partition_text} NOT NULL, position {t.json} NOT NULL, "
            f"updated_at {t.timestamp} NOT NULL DEFAULT {t.now}, PRIMARY KEY (pipeline, {part})){t.table_options}",
            HISTORY: f"CREATE TABLE IF NOT EXISTS {self.driver.table(HISTORY)} ("
            f"id {t.serial_key}, applied_at {t.timestamp} NOT NULL DEFAULT {t.now}, pipeline {t.text} NOT NULL, "
            f"table_name {t.text} NOT NULL, {change} {t.text} NOT NULL, column_name {t.text}, "
            f"old_definition {t.text}, new_definition {t.text}, ddl {t.text}, applied {t.boolean} NOT NULL)"
            f"{t.table_options}",
            **(ControlBooks(self.driver).create_statements() if self.control else {})})

    async def create_dlq_table(self, name: str) -> None:
        t = self.driver.types
        await self.driver.create_missing({name: (
            f"CREATE TABLE IF NOT EXISTS {self.driver.table(name)} ("
            f"id {t.serial_key}, pipeline {t.text} NOT NULL, {self._name('partition')} {t.text}, position {t.json}, "
            f"rule {t.text} NOT NULL, reason {t.text} NOT NULL, column_name {t.text}, value {t.text}, "
            f"payload {t.text}, created_at {t.timestamp} NOT NULL DEFAULT {t.created_now}){t.table_options}")})

    # -- checkpoints ---------------------------------------------------------------------------

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        """Store `new` if the stored position is `expected` (None: no row yet)."""
        t, table, part = self.driver.types, self.driver.table(CHECKPOINTS), self._name("partition")
        p = self._params(5)
        now = self.driver.now()
        if expected is None:
            sql = (f"INSERT INTO {table} (pipeline, {part}, position, updated_at) "
                   f"VALUES ({p[0]}, {p[1]}, {t.json_param.format(p[2])}, {p[3]}) {t.keep_existing}")
            return await self.driver.execute(sql, (pipeline, partition, position_text(new), now)) == 1
        sql = (f"UPDATE {table} SET position = {t.json_param.format(p[0])}, updated_at = {p[1]} "
               f"WHERE pipeline = {p[2]} AND {part} = {p[3]} AND position = {t.json_param.format(p[4])}")
        changed = await self.driver.execute(sql, (position_text(new), now, pipeline, partition,
                                                  position_text(expected)))
        if changed == 1:
            return True
        # A position stored as other text of the same JSON (written by hand, by a tool, by an older
        # version: other key order or spacing) is the expected one all the same; where the column
        # is text, compare it as JSON and swap against the very text that is stored.
        stored = await self.driver.fetch(
            f"SELECT {t.json_text.format('position')} FROM {table} WHERE pipeline = {p[0]} AND {part} = {p[1]}",
            (pipeline, partition))
        if not stored or stored[0][0] == position_text(expected) or not stored_as(stored[0][0], expected):
            return False
        return await self.driver.execute(sql, (position_text(new), now, pipeline, partition, stored[0][0])) == 1

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {row.partition: row.position for row in await self.list_checkpoints(pipeline)}

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        if not await self.driver.table_exists(CHECKPOINTS):
            return []  # nothing was ever committed here
        position, part = self.driver.types.json_text.format("position"), self._name("partition")
        sql = f"SELECT pipeline, {part}, {position}, updated_at FROM {self.driver.table(CHECKPOINTS)}"
        rows = await (self.driver.fetch(f"{sql} WHERE pipeline = {self.driver.param(1)} ORDER BY {part}",
                                        (pipeline,))
                      if pipeline else self.driver.fetch(f"{sql} ORDER BY pipeline, {part}"))
        return [CheckpointRow(r[0], r[1], orjson.loads(r[2]), _when(r[3])) for r in rows]

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        sql = f"DELETE FROM {self.driver.table(CHECKPOINTS)} WHERE pipeline = {self.driver.param(1)}"
        if partition is None:
            return await self.driver.execute(sql, (pipeline,))
        return await self.driver.execute(f"{sql} AND {self._name('partition')} = {self.driver.param(2)}",
                                         (pipeline, partition))

    # -- the DLQ table -------------------------------------------------------------------------

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject]:
        """Append DLQ rows; a re-read reject the table holds already is left out (`dlq_rereads`).
        Returns those written."""
        text = self.driver.text
        rejects = dlq_rereads.unseen(rejects, await self._stored(dlq_table, pipeline, rejects), text)
        if not rejects:
            return rejects
        p = self._params(8)
        sql = (f"INSERT INTO {self.driver.table(dlq_table)} (pipeline, {self._name('partition')}, position, rule, "
               f"reason, column_name, value, payload) VALUES ({p[0]}, {p[1]}, "
               f"{self.driver.types.json_param.format(p[2])}, {', '.join(p[3:])})")
        await self.driver.executemany(sql, [
            (pipeline, r.partition, position_text(r.position), r.rule, text(r.reason), text(r.column),
             text(r.value), text(r.payload)) for r in rejects])
        return rejects

    async def _stored(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> list[dlq_rereads.Identity]:
        """The pipeline's DLQ entries with the payload of a re-read reject among `rejects`. `=`
        only narrows them down (MySQL compares text without regard to case): the exact comparison
        is `dlq_rereads.unseen`'s."""
        payloads = dlq_rereads.reread_payloads(rejects, self.driver.text)
        found: list[dlq_rereads.Identity] = []
        sql = (f"SELECT {self._name('partition')}, rule, reason, payload FROM {self.driver.table(dlq_table)} "
               f"WHERE pipeline = {self.driver.param(1)} AND payload IN ")
        for start in range(0, len(payloads), _IDS_PER_STATEMENT):
            part = payloads[start:start + _IDS_PER_STATEMENT]
            rows = await self.driver.fetch(sql + f"({', '.join(self._params(len(part), 2))})", [pipeline, *part])
            found += [(r[0], r[1], r[2], r[3]) for r in rows]
        return found

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        """Remove DLQ rows (being replayed); return how many went."""
        gone = 0
        for start in range(0, len(ids), _IDS_PER_STATEMENT):
            part = ids[start:start + _IDS_PER_STATEMENT]
            gone += await self.driver.execute(
                f"DELETE FROM {self.driver.table(dlq_table)} WHERE id IN ({', '.join(self._params(len(part)))})",
                [int(i) for i in part])
        return gone

    async def read_dlq(self, dlq_table: str, pipeline: str, where: DlqFilter) -> list[DlqEntry]:
        position = self.driver.types.json_text.format("position")
        params: list[Any] = [pipeline]
        sql = (f"SELECT id, pipeline, {self._name('partition')}, {position}, rule, reason, column_name, value, "
               f"payload, created_at FROM {self.driver.table(dlq_table)} WHERE pipeline = {self.driver.param(1)}")
        for condition, value in (("rule = {}", where.rule),
                                 ("created_at >= {}", where.since and self.driver.timestamp_param(where.since)),
                                 ("created_at < {}", where.until and self.driver.timestamp_param(where.until))):
            if value is not None:
                params.append(value)
                sql += " AND " + condition.format(self.driver.param(len(params)))
        sql += " ORDER BY id" + (f" LIMIT {int(where.limit)}" if where.limit else "")
        return [DlqEntry(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else None, *r[4:])
                for r in await self.driver.fetch(sql, params)]

    # -- schema history ------------------------------------------------------------------------

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        p = ", ".join(self._params(8))
        await self.driver.executemany(
            f"INSERT INTO {self.driver.table(HISTORY)} (pipeline, table_name, {self._name('change')}, column_name, "
            "old_definition, "
            f"new_definition, ddl, applied) VALUES ({p})",
            [(pipeline, c.table, c.kind, c.column, c.old, c.new, c.ddl, c.applied) for c in changes])
