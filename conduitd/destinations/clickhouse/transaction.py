"""One batch's transaction on ClickHouse, which has no multi-statement transactions: the steps
the commit protocol runs are gathered here (nothing is written by them but DDL), and leaving the
transaction normally hands them to `flush.flush`, which writes them in one fixed order with the
checkpoint insert as the commit point. Any exception before that leaves nothing written.

Reads made inside (the live table, the stored positions, which keys and DLQ rows exist) see the
store as it is, without this transaction's own writes, which the protocol never reads back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from conduitd.core.records import Position, Reject, SchemaChange, position_text, stored_as
from conduitd.core.schema import Column
from conduitd.destinations import dlq_rereads
from conduitd.destinations.base import RowsPartlyRefused, RowsRefused
from conduitd.destinations.clickhouse.books import Books
from conduitd.destinations.clickhouse.dialect import META, column_from_catalog, literal, quote
from conduitd.errors import ConfigError


@dataclass
class Pending:
    """What the transaction's steps asked to write, in their order."""

    rows: list[tuple[str, pa.Table]] = field(default_factory=list)
    """(table, rows named like its columns)."""
    deletions: list[tuple[str, pa.Table]] = field(default_factory=list)
    """(table, keys of the rows deleted)."""
    rejects: list[tuple[str, str, list[Reject]]] = field(default_factory=list)
    """(DLQ table, pipeline, rejects)."""
    replayed: list[tuple[str, list[int]]] = field(default_factory=list)
    """(DLQ table, ids of DLQ rows removed)."""
    history: list[tuple[str, list[SchemaChange]]] = field(default_factory=list)
    checkpoints: list[tuple[str, str, str]] = field(default_factory=list)
    """(pipeline, partition, position as JSON text)."""
    pipeline: str | None = None
    version_floor: int = 0
    """The stored checkpoints' versions + 1: the batch's version is above every one of them."""

    def empty(self) -> bool:
        return not (self.rows or self.deletions or self.rejects or self.replayed or self.history or self.checkpoints)

    def mark(self) -> tuple[int, ...]:
        return (len(self.rows), len(self.deletions), len(self.rejects), len(self.replayed), len(self.history))

    def undo_to(self, mark: tuple[int, ...]) -> None:
        lists: tuple[list[Any], ...] = (self.rows, self.deletions, self.rejects, self.replayed, self.history)
        for kept, items in zip(mark, lists, strict=True):
            del items[kept:]


async def live_columns(books: Books, table: str) -> dict[str, Column] | None:
    """The live table's columns in order (conduitd's own left out), or None when it does not exist."""
    rows = await books.client.rows(
        f"SELECT name, type FROM system.columns WHERE database = {literal(books.database)} "
        f"AND table = {literal(table)} ORDER BY position")
    if not rows:
        return None if not await books.table_exists(table) else {}
    return {str(r[0]): column_from_catalog(str(r[0]), str(r[1])) for r in rows if r[0] not in META}


def _value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return literal(str(value))


class ClickHouseTransaction:
    """See the module docstring; one per `ClickHouseDestination.transaction()`."""

    def __init__(self, books: Books) -> None:
        self.books = books
        self.pending = Pending()
        self._keyed_tables: set[str] = set()

    def _seen(self, pipeline: str) -> None:
        self.pending.pipeline = self.pending.pipeline or pipeline

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await live_columns(self.books, table)

    async def run_ddl(self, statement: str) -> None:
        await self.books.client.command(statement)  # DDL is not transactional (Capabilities says so)

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        mark = self.pending.mark()
        try:
            yield
        except RowsRefused as refused:
            if not isinstance(refused, RowsPartlyRefused):
                self.pending.undo_to(mark)
            raise

    def savepoint(self) -> Any:
        return self._savepoint()

    async def _keyed(self, table: str) -> None:
        """Upserts and deletes need a table that replaces rows by key; refuse any other."""
        if table not in self._keyed_tables:
            if not await self.books.replaces_rows(table):
                raise ConfigError(f"table {table!r} is not a ReplacingMergeTree keyed on the unique key (it was "
                                  "created for appends, or outside conduitd): upserts and deletes need one")
            self._keyed_tables.add(table)

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        if key:
            await self._keyed(table)
        self.pending.rows.append((table, rows.select([c.name for c in columns])))

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # a refused value is known at the flush only: it fails the batch (no savepoints)

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        await self._keyed(table)
        names = keys.column_names
        tuples = ", ".join("(" + ", ".join(_value(v) for v in row.values()) + ")" for row in keys.to_pylist())
        target = f"({', '.join(quote(n) for n in names)})"
        found = await self.books.client.rows(
            f"SELECT count() FROM {self.books.table(table)} FINAL WHERE {target} IN ({tuples})")
        self.pending.deletions.append((table, keys))
        return int(found[0][0])

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject]:
        self._seen(pipeline)
        payloads = dlq_rereads.reread_payloads(rejects)
        if payloads:  # a re-read reject the DLQ holds already is left out
            rejects = dlq_rereads.unseen(rejects, await self.books.stored_rejects(dlq_table, pipeline, payloads))
        if rejects:
            self.pending.rejects.append((dlq_table, pipeline, list(rejects)))
        return rejects

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        live = await self.books.live_rejects(dlq_table, [int(i) for i in ids])
        if live:
            self.pending.replayed.append((dlq_table, live))
        return len(live)

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        self._seen(pipeline)
        self.pending.history.append((pipeline, list(changes)))

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        self._seen(pipeline)
        stored = await self.books.stored(pipeline, partition)
        if stored is not None:
            self.pending.version_floor = max(self.pending.version_floor, stored[1] + 1)
        if (stored is None) != (expected is None) or (stored is not None and not stored_as(stored[0], expected)):
            return False
        self.pending.checkpoints.append((pipeline, partition, position_text(new)))
        return True

