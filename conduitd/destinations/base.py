"""The contract every destination keeps, read by the runtime and by connector authors.

A destination offers four things, and imports nothing from the runtime:

- a `Dialect` (`conduitd.core.dialect`; pure: types, names, DDL text, row encoding);
- a frozen `Capabilities` value the runtime adapts to (it never asks a destination to adapt);
- `transaction()`, an async context manager opening ONE transaction: leaving it normally
  commits; any exception, cancellation included, rolls back (shielded) and leaves as an error of
  the tree in `conduitd.errors` (or `RowsRefused`, which the runtime handles inside the
  transaction). Inside it, the runtime runs the commit protocol (`conduitd.runtime.commit`) as
  named steps over the narrow `Transaction`;
- bookkeeping outside any batch: checkpoints to list and reset, DLQ rows to read, the live table.

SQL destinations get the bookkeeping tables (checkpoints, DLQ, schema history) and their
statements from `conduitd.destinations.sql`, written once over a small driver adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.records import Position, Reject, SchemaChange
from conduitd.core.schema import Column


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a destination can do; the runtime reads this and does the rest itself."""

    transactional_ddl: bool
    """DDL commits and rolls back with the batch (PostgreSQL, SQLite)."""
    savepoints: bool
    """`Transaction.savepoint` undoes part of a transaction: a refused row is isolated and the rest
    of the batch commits. Without it a refused row fails the whole batch (not retried: it would
    be refused again)."""
    upsert: bool
    """`write_rows` merges on a unique key (`mode: upsert`)."""
    prepare_ahead: bool
    """A batch may be prepared (rules, casts, encoding) in a worker thread while the previous one
    commits; False: prepared inside the transaction (SQLite: one thread holds the connection)."""
    atomic_checkpoint: bool
    """Positions commit in the same transaction as the rows (effectively-once). False: a crash
    between the two repeats the batch (at least once); the pipeline says so when it starts."""
    deletes: bool = True
    """`delete_rows` removes rows (deletes of `mode: upsert`). False: a batch with deletes is a
    config error before anything is written, never deletes silently dropped."""
    leases: bool = False
    """`leases()` gives the lease table that splits a source's partitions across replicas (database
    tables; Kinesis shards). False: such sources read every partition in this one replica."""
    control: bool = False
    """The destination keeps the control plane's usage, audit and schema decisions
    (`conduitd.destinations.control`): its transactions are `ControlTransaction`s and it is
    `ControlReads`. False: the API shows no usage for its pipelines and refuses mutations it
    cannot audit there."""


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


class RowsPartlyRefused(RowsRefused):
    """Raised by `Transaction.write_rows` when it found every row of the write the destination
    refuses and wrote all the others (PostgreSQL: an upsert's merge, retried row by row inside
    the server in one statement). Unlike a plain RowsRefused, the write's effects stand: the
    savepoint around it is released, and only `rows` (index in the written rows, reason) go to
    the DLQ."""

    def __init__(self, rows: Sequence[tuple[int, str]]) -> None:
        super().__init__(f"{len(rows)} rows refused", rows[0][0] if rows else None)
        self.rows = list(rows)


class Transaction(Protocol):
    """The steps the commit protocol (`conduitd.runtime.commit`) runs inside one open transaction."""

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        """The live table's columns, or None when it does not exist."""

    async def run_ddl(self, statement: str) -> None:
        """Run DDL from the dialect; a concurrent writer's same change raises TransientError."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A savepoint around a block: leaving it normally or with RowsPartlyRefused keeps what
        the block did; RowsRefused undoes it (then propagates). Any other exception propagates
        untouched: it ends the whole transaction, which rolls back."""

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        """Append rows (key empty) or upsert them on `key`; `payload` is `Dialect.encode` of exactly
        these rows when the caller has it. Raise RowsRefused for refused values, naming the
        refused row when the destination says which one it is."""

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        """(index in `rows`, reason) of rows `write_rows` would refuse, found together without
        writing anything, as far as the destination can tell them exactly ([] where it cannot).
        Called once a write of these rows was refused; on a destination without savepoints,
        before every write (a refused row cannot be taken out of its transaction after it)."""

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        """Delete the rows whose key columns equal a row of `keys`; return how many went."""

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject] | None:
        """Append DLQ rows. The rejects written, where some were left out (re-reads whose entry
        the DLQ holds already: `dlq_rereads`); None when all were: what the run counts."""

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        """Remove DLQ rows (being replayed in this transaction); return how many went."""

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        """Append to conduitd_schema_history."""

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        """Store `new` if the stored position is `expected` (None: no row yet); False otherwise."""


class Destination(Protocol):
    """A store that keeps rows and checkpoints in one transaction.

    Lifecycle: `open` (connects, creates the conduitd tables; raises DependencyUnreachable when
    the server cannot be reached; opening an open destination raises), then any number of calls
    (one at a time: the runtime never overlaps them), then `close` (harmless twice). Errors are
    those of `conduitd.errors`: TransientError when a retry may succeed, other ConduitErrors when
    not; driver exceptions never leave a destination.
    """

    @property
    def dialect(self) -> Dialect: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def open(self, *, read_only: bool = False) -> None:
        """Connect; unless `read_only`, create the conduitd tables (checkpoints, schema history)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise DependencyUnreachable unless the destination answers now."""

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        """What would keep `run` from creating or writing the pipeline's tables (privileges),
        found without writing anything; [] when nothing."""

    async def setup(self, pipeline: PipelineConfig) -> None:
        """Create what a pipeline needs besides its table (the DLQ table)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """BEGIN on entry; COMMIT on a normal exit; on any exception ROLLBACK (shielded) and raise
        it translated (see the class docstring)."""

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]: ...

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]: ...

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int: ...

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        """The live table's columns (outside any batch), or None when it does not exist."""

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        """DLQ rows of the pipeline, oldest first."""
