"""The control plane's tables in a SQL destination, beside the checkpoints:

- `conduitd_usage`: rows, bytes, DLQ rows and batches per pipeline and hour, added to by the
  transaction that commits each batch (rolled-back work is never counted);
- `conduitd_audit`: every mutation made through the API (who, what, when, before and after),
  written in the transaction that makes the change where the change is in this database;
- `conduitd_schema_decisions`: which pending schema changes (`schema_evolution: manual`) an
  operator applied or rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from conduitd.destinations.base import DlqEntry, DlqFilter
from conduitd.destinations.control import AuditEntry, PendingChange, UsageRow
from conduitd.destinations.sql.driver import SqlDriver

USAGE = "conduitd_usage"
AUDIT = "conduitd_audit"
DECISIONS = "conduitd_schema_decisions"
HISTORY = "conduitd_schema_history"


def _when(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace(" ", "T"))
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else None


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class ControlBooks:
    """The statements over one connection (`driver`)."""

    def __init__(self, driver: SqlDriver) -> None:
        self.driver = driver

    def _q(self, name: str) -> str:
        q = self.driver.types.quote
        return f"{q}{name}{q}"

    def _audit_columns(self) -> str:
        """The audit table's columns in `AuditEntry` order (`at` is reserved in DuckDB: quoted)."""
        return (f"id, {self._q('at')}, actor, {self._q('role')}, project, pipeline, action, before_state, "
                "after_state, idempotency_key")

    def create_statements(self) -> dict[str, str]:
        t, d = self.driver.types, self.driver
        return {
            USAGE: f"CREATE TABLE IF NOT EXISTS {d.table(USAGE)} (pipeline {t.pipeline_text} NOT NULL, "
                   f"project {t.text} NOT NULL, hour {t.timestamp} NOT NULL, {self._q('rows')} BIGINT NOT NULL, "
                   f"{self._q('bytes')} BIGINT NOT NULL, dlq_rows BIGINT NOT NULL, batches BIGINT NOT NULL, "
                   f"PRIMARY KEY (pipeline, hour)){t.table_options}",
            AUDIT: f"CREATE TABLE IF NOT EXISTS {d.table(AUDIT)} (id {t.serial_key}, "
                   f"{self._q('at')} {t.timestamp} NOT NULL DEFAULT {t.created_now}, actor {t.text} NOT NULL, "
                   f"{self._q('role')} {t.text} NOT NULL, project {t.text} NOT NULL, pipeline {t.text}, "
                   f"action {t.text} NOT NULL, before_state {t.text}, after_state {t.text}, "
                   f"idempotency_key {t.text}){t.table_options}",
            DECISIONS: f"CREATE TABLE IF NOT EXISTS {d.table(DECISIONS)} (history_id BIGINT PRIMARY KEY, "
                       f"decision {t.text} NOT NULL, actor {t.text} NOT NULL, "
                       f"decided_at {t.timestamp} NOT NULL DEFAULT {t.created_now}){t.table_options}",
        }

    # -- usage ---------------------------------------------------------------------------------

    async def add_usage(self, pipeline: str, project: str, at: datetime, rows: int, nbytes: int,
                        dlq_rows: int) -> None:
        """Add one committed batch to its hour (in the batch's transaction)."""
        d, t = self.driver, self.driver.types
        hour = d.timestamp_param(hour_of(at))
        p = [d.param(n) for n in range(1, 8)]
        await d.execute(f"INSERT INTO {d.table(USAGE)} (pipeline, project, hour, {self._q('rows')}, "
                        f"{self._q('bytes')}, dlq_rows, batches) VALUES ({p[0]}, {p[1]}, {p[2]}, 0, 0, 0, 0) "
                        f"{t.keep_existing}", (pipeline, project, hour))
        r, b = self._q("rows"), self._q("bytes")
        await d.execute(f"UPDATE {d.table(USAGE)} SET {r} = {r} + {p[0]}, {b} = {b} + {p[1]}, "
                        f"dlq_rows = dlq_rows + {p[2]}, batches = batches + 1, project = {p[3]} "
                        f"WHERE pipeline = {p[4]} AND hour = {p[5]}",
                        (rows, nbytes, dlq_rows, project, pipeline, hour))

    async def read_usage(self, pipelines: Sequence[str], since: datetime | None = None) -> list[UsageRow]:
        d = self.driver
        if not pipelines or not await d.table_exists(USAGE):
            return []
        params: list[Any] = list(pipelines)
        marks = ", ".join(d.param(n) for n in range(1, len(params) + 1))
        sql = (f"SELECT pipeline, project, hour, {self._q('rows')}, {self._q('bytes')}, dlq_rows, batches "
               f"FROM {d.table(USAGE)} WHERE pipeline IN ({marks})")
        if since is not None:
            params.append(d.timestamp_param(hour_of(since)))
            sql += f" AND hour >= {d.param(len(params))}"
        rows = await d.fetch(sql + " ORDER BY hour, pipeline", params)
        return [UsageRow(r[0], r[1], _when(r[2]) or datetime.now(UTC), int(r[3]), int(r[4]), int(r[5]), int(r[6]))
                for r in rows]

    # -- audit ---------------------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        d = self.driver
        p = ", ".join(d.param(n) for n in range(1, 10))
        await d.execute(
            f"INSERT INTO {d.table(AUDIT)} (actor, {self._q('role')}, project, pipeline, action, before_state, "
            f"after_state, idempotency_key, {self._q('at')}) VALUES ({p})",
            (entry.actor, entry.role, entry.project, entry.pipeline, entry.action, _json(entry.before),
             _json(entry.after), entry.idempotency_key, d.timestamp_param(datetime.now(UTC))))

    async def read_audit(self, projects: Sequence[str] | None, limit: int, before_id: int | None = None
                         ) -> list[AuditEntry]:
        """Newest first; `projects` None: every project."""
        d = self.driver
        if not await d.table_exists(AUDIT):
            return []
        params: list[Any] = []
        where = []
        if projects is not None:
            if not projects:
                return []
            params += list(projects)
            where.append(f"project IN ({', '.join(d.param(n) for n in range(1, len(params) + 1))})")
        if before_id is not None:
            params.append(before_id)
            where.append(f"id < {d.param(len(params))}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await d.fetch(
            f"SELECT {self._audit_columns()} FROM {d.table(AUDIT)}{clause} ORDER BY id DESC LIMIT {int(limit)}", params)
        return [AuditEntry(actor=r[2], role=r[3], project=r[4], pipeline=r[5], action=r[6],
                           before=_unjson(r[7]), after=_unjson(r[8]), idempotency_key=r[9], id=int(r[0]),
                           at=_when(r[1])) for r in rows]

    async def find_audit(self, actor: str, pipeline: str, key: str) -> AuditEntry | None:
        """The mutation `actor` made on `pipeline` under the Idempotency-Key `key`, if any."""
        d = self.driver
        if not await d.table_exists(AUDIT):
            return None
        rows = await d.fetch(
            f"SELECT {self._audit_columns()} FROM {d.table(AUDIT)} WHERE actor = {d.param(1)} "
            f"AND pipeline = {d.param(2)} AND idempotency_key = {d.param(3)} ORDER BY id LIMIT 1",
            (actor, pipeline, key))
        return next((AuditEntry(actor=r[2], role=r[3], project=r[4], pipeline=r[5], action=r[6],
                                before=_unjson(r[7]), after=_unjson(r[8]), idempotency_key=r[9], id=int(r[0]),
                                at=_when(r[1])) for r in rows), None)

    # -- schema changes of `manual` evolution --------------------------------------------------

    async def pending_changes(self, pipeline: str) -> list[PendingChange]:
        d = self.driver
        if not await d.table_exists(HISTORY):
            return []
        decided = ""
        if await d.table_exists(DECISIONS):
            decided = f" AND NOT EXISTS (SELECT 1 FROM {d.table(DECISIONS)} x WHERE x.history_id = h.id)"
        rows = await d.fetch(
            f"SELECT h.id, h.applied_at, h.table_name, h.{self._q('change')}, h.column_name, h.old_definition, "
            f"h.new_definition, h.ddl FROM {d.table(HISTORY)} h WHERE h.pipeline = {d.param(1)} "
            f"AND h.applied = {d.param(2)} AND h.ddl IS NOT NULL{decided} ORDER BY h.id", (pipeline, False))
        return [PendingChange(int(r[0]), _when(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    async def same_changes(self, pipeline: str, history_id: int) -> list[int]:
        """The undecided changes of the pipeline with the DDL of change `history_id` (itself
        included): every batch that met the change recorded it again, and they are one change.
        Empty when `history_id` is not a pending change of the pipeline."""
        pending = await self.pending_changes(pipeline)
        chosen = next((c for c in pending if c.id == history_id), None)
        if chosen is None:
            return []
        return [c.id for c in pending if (c.table, c.ddl) == (chosen.table, chosen.ddl)]

    async def decision(self, pipeline: str, history_id: int) -> tuple[bool, str | None]:
        """(whether `history_id` is a schema change of the pipeline, the decision taken on it or None)."""
        d = self.driver
        if not await d.table_exists(HISTORY):
            return False, None
        found = await d.fetch(f"SELECT 1 FROM {d.table(HISTORY)} WHERE id = {d.param(1)} AND pipeline = {d.param(2)}",
                              (history_id, pipeline))
        if not found or not await d.table_exists(DECISIONS):
            return bool(found), None
        taken = await d.fetch(f"SELECT decision FROM {d.table(DECISIONS)} WHERE history_id = {d.param(1)}",
                              (history_id,))
        return True, (str(taken[0][0]) if taken else None)

    async def decide(self, history_id: int, decision: str, actor: str) -> bool:
        """Record the decision; False when the change was decided already (by someone else)."""
        d, t = self.driver, self.driver.types
        p = [d.param(n) for n in range(1, 5)]
        keep = t.keep_existing.replace("pipeline", "decision") if "DUPLICATE" in t.keep_existing else t.keep_existing
        return await d.execute(f"INSERT INTO {d.table(DECISIONS)} (history_id, decision, actor, decided_at) "
                               f"VALUES ({p[0]}, {p[1]}, {p[2]}, {p[3]}) {keep}",
                               (history_id, decision, actor, d.timestamp_param(datetime.now(UTC)))) == 1


    # -- the DLQ table, for the API: pages and selections ---------------------------------------

    async def read_dlq(self, dlq_table: str, pipeline: str, where: DlqFilter, *, after_id: int | None = None,
                       ids: Sequence[int] | None = None) -> list[DlqEntry]:
        """DLQ rows of the pipeline in id order: those matching `where` (rule, created since/until,
        at most `limit`), with an id above `after_id` (paging), and among `ids` when given."""
        d = self.driver
        if not await d.table_exists(dlq_table):
            return []
        if ids is not None and not ids:
            return []
        params: list[Any] = [pipeline]
        sql = (f"SELECT id, pipeline, {self._q('partition')}, {d.types.json_text.format('position')}, rule, "
               f"reason, column_name, value, payload, created_at FROM {d.table(dlq_table)} "
               f"WHERE pipeline = {d.param(1)}")
        for condition, value in (("rule = {}", where.rule),
                                 ("created_at >= {}", where.since and d.timestamp_param(where.since)),
                                 ("created_at < {}", where.until and d.timestamp_param(where.until)),
                                 ("id > {}", after_id)):
            if value is not None:
                params.append(value)
                sql += " AND " + condition.format(d.param(len(params)))
        if ids is not None:
            first = len(params) + 1
            params += [int(i) for i in ids]
            sql += f" AND id IN ({', '.join(d.param(n) for n in range(first, len(params) + 1))})"
        sql += " ORDER BY id" + (f" LIMIT {int(where.limit)}" if where.limit else "")
        return [DlqEntry(int(r[0]), r[1], r[2], orjson.loads(r[3]) if r[3] else None, r[4], r[5], r[6], r[7], r[8],
                         _when(r[9])) for r in await d.fetch(sql, params)]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _unjson(value: Any) -> Any:
    return None if value is None else orjson.loads(value)
