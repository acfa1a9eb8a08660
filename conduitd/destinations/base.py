"""The contract every destination keeps: a dialect (pure: types, DDL text, row encoding) and a
transaction (I/O: the steps of the commit protocol), behind one `Destination`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from conduitd.config import ResourceConfig
from conduitd.core.dialect import Dialect
from conduitd.core.quality import Violation
from conduitd.core.records import Batch, Position, Reject, SchemaChange
from conduitd.core.schema import Column

if TYPE_CHECKING:
    from conduitd.core.prepare import Prepared
    from conduitd.dlq_sinks import DlqSink


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one committed batch did."""

    rows_written: int
    rows_rejected: int
    changes: tuple[SchemaChange, ...] = ()
    rows_deleted: int = 0
    rejected_by_rule: Mapping[str, int] = field(default_factory=dict)
    quality: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(rule, action) -> rows that broke it."""
    warned: tuple[Violation, ...] = ()
    """Rows written although a `warn` rule flagged them (for the log)."""


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    pipeline: str
    partition: str
    position: Position
    updated_at: datetime | None = field(default=None)


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One row of a DLQ table."""

    id: int | str
    pipeline: str
    partition: str | None
    position: Position
    rule: str
    reason: str
    column: str | None
    value: str | None
    payload: str | None
    created_at: datetime | str | None


@dataclass(frozen=True, slots=True)
class DlqFilter:
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


class RowsRefused(Exception):
    """The destination refused some value of the rows being written (SQLSTATE class 22 or 23,
    a constraint): the commit isolates the culprit rows and dead-letters them.

    `row`: the index (in the rows of that write) of the row refused, when the destination names
    it by a structured means (PostgreSQL's COPY line, the parameter set SQLite stopped at); the
    rows before it were accepted. None: not known, the commit searches for it."""

    def __init__(self, reason: str, row: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row


class Transaction(Protocol):
    """The I/O steps the commit protocol (`conduitd.runtime.commit`) runs inside one open transaction."""

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        """The live table's columns, or None when it does not exist."""

    async def run_ddl(self, statement: str) -> None: ...

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        """Append to conduitd_schema_history."""

    async def savepoint(self) -> None: ...

    async def rollback_to_savepoint(self) -> None: ...

    async def release_savepoint(self) -> None: ...

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        """Append rows (key empty) or upsert them on `key`; `payload` is `Dialect.encode` of exactly
        these rows when the caller has it. Raise RowsRefused for refused values, naming the
        refused row when the destination says which one it is."""

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        """(index in `rows`, reason) of rows `write_rows` would refuse, found together without
        writing anything, as far as the destination can tell them exactly ([] where it cannot).
        Called once a write of these rows was refused."""

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        """Delete the rows whose key columns equal a row of `keys`; return how many went."""

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None: ...

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        """Remove DLQ rows (being replayed in this transaction); return how many went."""

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        """Store `new` if the stored position is `expected` (None: no row yet); False otherwise."""


class Destination(Protocol):
    """A store that keeps rows and checkpoints in one transaction.

    Lifecycle: `open` (connects, creates the conduitd tables; raises DependencyUnreachable when
    the server cannot be reached), then any number of calls, then `close` (harmless twice).
    `prepare_batch` does the CPU work of a batch (rules, casts, encoding) off the event loop and
    without the connection, so the pipeline prepares the next batch while this one commits.
    `commit_batch` is the whole commit protocol for a prepared batch: it either commits rows, DLQ
    rows, schema changes and the new checkpoints together, or commits nothing and raises. It
    raises CheckpointConflict when a stored position is not the batch's start position (another
    writer owns it), TransientError when a retry may succeed, and other ConduitErrors when not.
    """

    @property
    def dialect(self) -> Dialect: ...

    async def open(self, *, read_only: bool = False) -> None:
        """Connect; unless `read_only`, create the conduitd tables (checkpoints, schema history)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise DependencyUnreachable unless the destination answers now."""

    async def write_problems(self, resource: ResourceConfig) -> list[str]:
        """What would keep `run` from creating or writing the pipeline's tables (privileges),
        found without writing anything; [] when nothing."""

    async def setup(self, resource: ResourceConfig) -> None:
        """Create what a pipeline needs besides its table (the DLQ table)."""

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]: ...

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]: ...

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int: ...

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        """The live table's columns (outside any batch), or None when it does not exist."""

    async def read_dlq(self, resource: ResourceConfig, where: DlqFilter) -> list[DlqEntry]:
        """DLQ rows of the resource, oldest first."""

    async def prepare_batch(self, resource: ResourceConfig, batch: Batch) -> Prepared: ...

    async def commit_batch(self, resource: ResourceConfig, prepared: Prepared,
                           dlq: DlqSink | None = None) -> CommitResult:
        """`dlq`: an external DLQ (file, topic) written just before COMMIT; None: the DLQ table."""

