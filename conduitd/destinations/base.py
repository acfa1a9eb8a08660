"""The contract every destination keeps, and the per-dialect transaction it lends the commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from conduitd.config import ResourceConfig
from conduitd.records import Batch, Position, Reject
from conduitd.schema import Column


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one committed batch did."""

    rows_written: int
    rows_rejected: int
    ddl: tuple[str, ...] = ()
    rows_deleted: int = 0
    rejected_by_rule: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    pipeline: str
    partition: str
    position: Position
    updated_at: datetime | None = field(default=None)


class RowsRefused(Exception):
    """The destination refused some value of the rows being written (SQLSTATE class 22 or 23,
    a constraint): the commit isolates the culprit rows and dead-letters them."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Destination(Protocol):
    """A store that keeps rows and checkpoints in one transaction.

    Lifecycle: `open` (connects, creates the conduitd tables; raises DependencyUnreachable when
    the server cannot be reached), then any number of calls, then `close` (harmless twice).
    `commit_batch` is the whole commit protocol for one batch: it either commits rows, DLQ rows
    and the new checkpoints together, or commits nothing and raises. It raises CheckpointConflict
    when a stored position is not the batch's start position (another writer owns it),
    TransientError when a retry may succeed, and other ConduitErrors when it cannot.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise DependencyUnreachable unless the destination answers now."""

    async def prepare(self, resource: ResourceConfig) -> None:
        """Create what a pipeline needs besides its table (the DLQ table)."""

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]: ...

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]: ...

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int: ...

    async def commit_batch(self, resource: ResourceConfig, batch: Batch) -> CommitResult: ...


class Transaction(Protocol):
    """The dialect-specific steps the commit protocol (`conduitd.commit`) runs inside one open
    transaction. Identifiers passed in come from data: implementations always quote them."""

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        """The column a new table gets for values of this Arrow type."""

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        """The live table's columns, or None when it does not exist."""

    async def create_table(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        """Create the table (key = primary key, may be empty); return the DDL run."""

    async def add_column(self, table: str, column: Column) -> str:
        """Add a nullable column; return the DDL run."""

    async def savepoint(self) -> None: ...

    async def rollback_to_savepoint(self) -> None: ...

    async def release_savepoint(self) -> None: ...

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                         key: Sequence[str]) -> None:
        """Append rows (key empty) or upsert them on `key`; raise RowsRefused for refused values."""

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        """Delete the rows whose key columns equal a row of `keys`; return how many went."""

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None: ...

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        """Store `new` if the stored position is `expected` (None: no row yet); False otherwise."""
