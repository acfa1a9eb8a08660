"""What the in-memory destination keeps: tables, checkpoints, DLQ tables and schema history, as
one `State` value that a transaction copies, changes and, at COMMIT, puts in place whole.

`MemoryStore` holds the committed state; several destinations may share one (replicas, or a
destination opened again to check that it resumes). Tests read it directly: `snapshot()`
compares equal to another exactly when rows, DLQ rows, schema history, checkpoints and table
columns are equal (times are left out of the comparison).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from conduitd.core.records import Position, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import DlqEntry


@dataclass
class MemoryTable:
    columns: dict[str, Column]
    """In table order."""
    key: tuple[str, ...] = ()
    """The PRIMARY KEY of its CREATE TABLE: an append that repeats one is refused."""
    rows: list[dict[str, Any]] = field(default_factory=list)

    def copy(self) -> MemoryTable:
        return MemoryTable(dict(self.columns), self.key, [dict(r) for r in self.rows])


@dataclass
class Checkpoint:
    position: str
    """Canonical JSON text (`position_text`): positions compare as their text."""
    updated_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HistoryEntry:
    pipeline: str
    change: SchemaChange
    applied_at: datetime | None = field(default=None, compare=False)


@dataclass
class State:
    """Everything a destination keeps; see the module docstring."""

    tables: dict[str, MemoryTable] = field(default_factory=dict)
    checkpoints: dict[tuple[str, str], Checkpoint] = field(default_factory=dict)
    """(pipeline, partition) -> position."""
    dlq: dict[str, list[DlqEntry]] = field(default_factory=dict)
    """DLQ table -> its rows; created by `setup`."""
    history: list[HistoryEntry] = field(default_factory=list)
    next_id: int = 1
    """The next DLQ row's id (rolled back with its transaction, unlike a SQL sequence)."""

    def copy(self) -> State:
        # Rows are dicts of immutable values, DLQ entries and history are frozen: copying the
        # containers is a full copy.
        return State({n: t.copy() for n, t in self.tables.items()},
                     {k: replace(c) for k, c in self.checkpoints.items()},
                     {n: list(rows) for n, rows in self.dlq.items()}, list(self.history), self.next_id)


def _comparable(entry: DlqEntry) -> DlqEntry:
    return replace(entry, created_at=None)


class MemoryStore:
    """The committed `State` (see the module docstring) and the lock that lets one transaction
    at a time write it (as SQLite's BEGIN IMMEDIATE does)."""

    def __init__(self) -> None:
        self.state = State()
        self.commits = 0
        """Transactions committed so far."""
        self.rollbacks = 0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Hold the store's write lock (one per event loop: tests may run several loops)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            yield

    def snapshot(self) -> State:
        """A copy of the committed state, comparable with `==` (times left out)."""
        copy = self.state.copy()
        copy.dlq = {n: [_comparable(e) for e in rows] for n, rows in copy.dlq.items()}
        return copy

    # -- reading, for tests ----------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The table's committed rows in the order written ([] when it does not exist)."""
        found = self.state.tables.get(table)
        return [] if found is None else [dict(r) for r in found.rows]

    def columns(self, table: str) -> dict[str, Column] | None:
        found = self.state.tables.get(table)
        return None if found is None else dict(found.columns)

    def dlq(self, table: str) -> list[DlqEntry]:
        return list(self.state.dlq.get(table, []))

    def history(self, pipeline: str | None = None) -> list[SchemaChange]:
        return [h.change for h in self.state.history if pipeline is None or h.pipeline == pipeline]

    def checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {partition: orjson.loads(c.position) for (p, partition), c in sorted(self.state.checkpoints.items())
                if p == pipeline}
