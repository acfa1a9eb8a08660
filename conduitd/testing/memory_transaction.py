"""One transaction of the in-memory destination: the `Transaction` steps over a private copy of
the store's state, put in place at COMMIT (see `memory_destination`).

It behaves as a strict SQL database would, and says so when the runtime breaks the contract:
a refused write leaves the transaction aborted (as PostgreSQL does) until a savepoint around it
is rolled back, so a statement or a COMMIT after an unhandled refusal is a `ContractViolation`;
so are a savepoint or an upsert the destination's capabilities do not offer, and a `payload`
that is not the encoding of the rows written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Literal, Protocol

import pyarrow as pa

from conduitd.core.records import Position, Reject, SchemaChange, position_text
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, DlqEntry, RowsPartlyRefused, RowsRefused
from conduitd.errors import ConduitError, SchemaIncompatible, TransientError
from conduitd.testing.faults import ContractViolation
from conduitd.testing.memory_dialect import (
    AddColumn,
    AlterType,
    CreateTable,
    Ddl,
    MemoryDialect,
    MemoryPayload,
    parse_ddl,
)
from conduitd.testing.memory_store import Checkpoint, HistoryEntry, MemoryStore, MemoryTable, State

Refuse = Callable[[str, Mapping[str, Any]], str | None]
"""(table, row) -> why the destination refuses the row, or None."""
Refusal = Literal["names_row", "anonymous", "partly"]
"""How a write reports a refused row: naming it (PostgreSQL's COPY line, SQLite's parameter
set), not naming it (the statement failed as a whole), or writing every other row and raising
RowsPartlyRefused (PostgreSQL's upsert merge retried row by row)."""


def apply_ddl(state: State, ddl: Ddl, name_key: Callable[[str], str]) -> None:
    """Run a parsed statement on `state`; a table or column that exists already is a concurrent
    writer's same change (TransientError, as `Transaction.run_ddl` says)."""
    if isinstance(ddl, CreateTable):
        if ddl.table in state.tables:
            raise TransientError(f"memory destination: table {ddl.table!r} exists already (a concurrent change)")
        state.tables[ddl.table] = MemoryTable({c.name: c for c in ddl.columns}, ddl.key)
        return
    table = state.tables.get(ddl.table)
    if table is None:
        raise ConduitError(f"memory destination: table {ddl.table!r} does not exist")
    if isinstance(ddl, AddColumn):
        if any(name_key(n) == name_key(ddl.column.name) for n in table.columns):
            raise TransientError(f"memory destination: column {ddl.column.name!r} exists already "
                                 "(a concurrent change)")
        table.columns[ddl.column.name] = ddl.column
        for row in table.rows:
            row[ddl.column.name] = None
        return
    assert isinstance(ddl, AlterType)
    name = ddl.column.name
    if name not in table.columns:
        raise ConduitError(f"memory destination: table {ddl.table!r} has no column {name!r}")
    try:
        values = pa.array([r.get(name) for r in table.rows], table.columns[name].arrow).cast(ddl.column.arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ConduitError(f"memory destination: cannot change column {name!r} to {ddl.column.sql}: {exc}") from None
    for row, value in zip(table.rows, values.to_pylist(), strict=True):
        row[name] = value
    table.columns[name] = ddl.column


class Settings(Protocol):
    """What a transaction needs of its destination (`MemoryDestination`)."""

    store: MemoryStore
    capabilities: Capabilities
    dialect: MemoryDialect
    refuse: Refuse | None
    refusal: Refusal
    screens: bool


class MemoryTransaction:
    """See the module docstring; one per transaction."""

    def __init__(self, destination: Settings, state: State, now: Callable[[], datetime]) -> None:
        self.destination = destination
        self.state = state
        self.now = now
        self.aborted: str | None = None
        """Why the transaction is aborted (a refused write not yet rolled back to a savepoint)."""

    def _statement(self) -> None:
        if self.aborted is not None:
            raise ContractViolation(f"a statement in a transaction aborted by a refused write ({self.aborted}) "
                                    "that was not rolled back to a savepoint")

    def _table(self, table: str) -> MemoryTable:
        found = self.state.tables.get(table)
        if found is None:
            raise ConduitError(f"memory destination: table {table!r} does not exist")
        return found

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        self._statement()
        found = self.state.tables.get(table)
        return None if found is None else dict(found.columns)

    async def run_ddl(self, statement: str) -> None:
        self._statement()
        ddl = parse_ddl(statement)
        apply_ddl(self.state, ddl, self.destination.dialect.name_key)
        if not self.destination.capabilities.transactional_ddl:
            # DDL outside the transaction (as MySQL's): it stays when the transaction rolls back.
            apply_ddl(self.destination.store.state, ddl, self.destination.dialect.name_key)

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        if not self.destination.capabilities.savepoints:
            raise ContractViolation("savepoint() called on a destination whose capabilities say it has none")
        return self._savepoint()

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        self._statement()
        saved = self.state.copy()
        try:
            yield
        except RowsPartlyRefused:
            raise  # what the write did stands
        except BaseException:
            self.state, self.aborted = saved, None
            raise

    # -- rows --------------------------------------------------------------------------------------

    def _values(self, rows: pa.Table, columns: Sequence[Column], payload: object | None) -> MemoryPayload:
        encoded = self.destination.dialect.encode(rows, columns)
        if payload is not None and payload != encoded:
            raise ContractViolation("write_rows got a payload that is not the encoding of the rows written")
        return encoded

    def _check_columns(self, table: MemoryTable, name: str, columns: Sequence[Column]) -> None:
        for column in columns:
            live = table.columns.get(column.name)
            if live is None:
                raise ConduitError(f"memory destination: table {name!r} has no column {column.name!r}")
            if live.sql != column.sql:
                raise ContractViolation(f"column {column.name!r} of {name!r} is {live.sql}, written as {column.sql}: "
                                        "the batch was prepared against another table")

    def _judge(self, table: MemoryTable, name: str, row: dict[str, Any], key: Sequence[str],
               index: dict[tuple[Any, ...], int]) -> str | None:
        """Why `row` is refused by the table as `rows` hold it now (None: it is not)."""
        for column_name in table.key:
            if row.get(column_name) is None:
                return f"null value in column {column_name!r} violates not-null constraint"
        for column_name, value in row.items():
            try:
                pa.array([value], table.columns[column_name].arrow)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                return f"invalid input for {table.columns[column_name].sql}: {str(value)[:80]!r}"
        refuse = self.destination.refuse
        reason = refuse(name, row) if refuse is not None else None
        if reason is not None:
            return reason
        if table.key and not key and tuple(row.get(k) for k in table.key) in index:
            return f"duplicate key value violates unique constraint (primary key {', '.join(table.key)})"
        return None

    def _write(self, name: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
               payload: object | None, into: MemoryTable) -> list[tuple[int, str]]:
        """Write the rows into `into`, leaving out the refused ones; return those."""
        encoded = self._values(rows, columns, payload)
        self._check_columns(into, name, columns)
        merge_on = tuple(key) or into.key
        index = {tuple(r.get(k) for k in merge_on): i for i, r in enumerate(into.rows)} if merge_on else {}
        refused: list[tuple[int, str]] = []
        for number, values in enumerate(encoded.values):
            row = dict(zip(encoded.names, values, strict=True))
            reason = self._judge(into, name, row, key, index)
            if reason is not None:
                refused.append((number, reason))
                continue
            at = index.get(tuple(row.get(k) for k in merge_on)) if key else None
            if at is None:
                into.rows.append({c: row.get(c) for c in into.columns})
                if merge_on:
                    index[tuple(row.get(k) for k in merge_on)] = len(into.rows) - 1
            else:
                into.rows[at].update(row)
        return refused

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self._statement()
        if key and not self.destination.capabilities.upsert:
            raise ContractViolation("write_rows with a key (an upsert) on a destination whose capabilities "
                                    "say it cannot upsert")
        target = self._table(table)
        if key and set(key) != set(target.key):
            raise SchemaIncompatible(f"memory destination: table {table!r} has no unique key on {', '.join(key)} "
                                     "to upsert on")
        scratch = target.copy()
        refused = self._write(table, rows, columns, key, payload, scratch)
        mode = self.destination.refusal
        if refused and mode != "partly":
            row, reason = refused[0]
            self.aborted = reason
            raise RowsRefused(f"memory destination refused row {row}: {reason}",
                              row if mode == "names_row" else None)
        self.state.tables[table] = scratch
        if refused:
            raise RowsPartlyRefused(refused)

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        self._statement()
        if not self.destination.screens:
            return []
        return self._write(table, rows, columns, key, None, self._table(table).copy())

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        self._statement()
        target = self._table(table)
        gone = {tuple(k.values()) for k in keys.to_pylist()}
        names = keys.column_names
        kept = [r for r in target.rows if tuple(r.get(n) for n in names) not in gone]
        deleted = len(target.rows) - len(kept)
        target.rows = kept
        return deleted

    # -- bookkeeping -------------------------------------------------------------------------------

    def _dlq(self, dlq_table: str) -> list[DlqEntry]:
        found = self.state.dlq.get(dlq_table)
        if found is None:
            raise ConduitError(f"memory destination: DLQ table {dlq_table!r} does not exist (setup() creates it)")
        return found

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None:
        self._statement()
        entries = self._dlq(dlq_table)
        for r in rejects:
            entries.append(DlqEntry(self.state.next_id, pipeline, r.partition, r.position, r.rule, r.reason, r.column,
                                    r.value, r.payload, self.now()))
            self.state.next_id += 1

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        self._statement()
        entries = self._dlq(dlq_table)
        wanted = set(ids)
        kept = [e for e in entries if e.id not in wanted]
        self.state.dlq[dlq_table] = kept
        return len(entries) - len(kept)

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        self._statement()
        self.state.history.extend(HistoryEntry(pipeline, c, self.now()) for c in changes)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        self._statement()
        stored = self.state.checkpoints.get((pipeline, partition))
        if (stored is None) != (expected is None):
            return False
        if stored is not None and stored.position != position_text(expected):
            return False
        self.state.checkpoints[(pipeline, partition)] = Checkpoint(position_text(new), self.now())
        return True
