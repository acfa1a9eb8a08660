"""What a destination keeps for the control plane (`Capabilities.control`): usage per hour, the
audit log, and decisions on pending schema changes. The SQL destinations keep them in tables
(`conduitd.destinations.sql.control`); the runtime and the API reach them through these Protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from conduitd.destinations.base import DlqEntry, DlqFilter


@dataclass(frozen=True, slots=True)
class UsageRow:
    pipeline: str
    project: str
    hour: datetime
    rows: int
    bytes: int
    dlq_rows: int
    batches: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    role: str
    project: str
    pipeline: str | None
    action: str
    before: Any = None
    after: Any = None
    idempotency_key: str | None = None
    id: int | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A schema change `manual` evolution recorded but did not apply."""

    id: int
    recorded_at: datetime | None
    table: str
    change: str
    column: str | None
    old: str | None
    new: str | None
    ddl: str



@runtime_checkable
class ControlTransaction(Protocol):
    """The control plane's steps inside a destination transaction."""

    async def record_usage(self, pipeline: str, project: str, at: datetime, rows: int, nbytes: int,
                           dlq_rows: int) -> None:
        """Add one committed batch to its hour (called by the commit protocol, in the batch's transaction)."""

    async def record_audit(self, entry: AuditEntry) -> None: ...

    async def decide_change(self, history_id: int, decision: str, actor: str) -> bool:
        """Record an operator's decision on a pending schema change; False when it was decided already."""

    async def run_ddl(self, statement: str) -> None: ...


@runtime_checkable
class ControlReads(Protocol):
    """The control plane's reads, outside any batch."""

    async def read_usage(self, pipelines: Sequence[str], since: datetime | None = None) -> list[UsageRow]: ...

    async def read_audit(self, projects: Sequence[str] | None, limit: int,
                         before_id: int | None = None) -> list[AuditEntry]:
        """Newest first; `projects` None: every project."""

    async def find_audit(self, actor: str, pipeline: str, key: str) -> AuditEntry | None:
        """The mutation `actor` made on `pipeline` under the Idempotency-Key `key`, if any."""

    async def pending_changes(self, pipeline: str) -> list[PendingChange]: ...

    async def same_changes(self, pipeline: str, history_id: int) -> list[int]:
        """The pending changes of the pipeline with the same table and DDL as `history_id` (itself
        included; each batch that met a change recorded it again); [] when it is not pending."""

    async def decision(self, pipeline: str, history_id: int) -> tuple[bool, str | None]:
        """(whether `history_id` is a schema change of the pipeline, the decision taken on it or None)."""

    async def read_dlq_page(self, dlq_table: str, pipeline: str, where: DlqFilter, *, after_id: int | None = None,
                            ids: Sequence[int] | None = None) -> list[DlqEntry]:
        """The pipeline's DLQ rows matching `where`, with an id above `after_id`, among `ids` when
        given, in id order ([] when the DLQ table does not exist)."""
