"""The `Transaction` steps every SQL destination shares: savepoints and the bookkeeping steps.
A store's transaction class adds its own writes (rows, deletes, screening) and DDL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from conduitd.core.records import Position, Reject, SchemaChange
from conduitd.destinations.base import RowsPartlyRefused, RowsRefused
from conduitd.destinations.control import AuditEntry
from conduitd.destinations.sql.bookkeeping import Bookkeeping
from conduitd.destinations.sql.control import ControlBooks


class SqlTransaction:
    """See the module docstring; one per transaction."""

    def __init__(self, books: Bookkeeping) -> None:
        self.books = books
        self.driver = books.driver
        self._depth = 0

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._depth += 1
        name = f"conduitd_{self._depth}"
        await self.driver.run(f"SAVEPOINT {name}")
        try:
            yield
        except RowsPartlyRefused:
            await self.driver.run(f"RELEASE SAVEPOINT {name}")  # what was written stands
            raise
        except RowsRefused:
            # One round trip where the driver can: isolating refused rows runs this once per row.
            await self.driver.run(f"ROLLBACK TO SAVEPOINT {name}", f"RELEASE SAVEPOINT {name}")
            raise
        # Any other exception (a lost connection, cancellation) is left to roll the whole
        # transaction back: a statement now could fail and hide it.
        else:
            await self.driver.run(f"RELEASE SAVEPOINT {name}")
        finally:
            self._depth -= 1

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject]:
        return await self.books.write_rejects(dlq_table, pipeline, rejects)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        return await self.books.delete_rejects(dlq_table, ids)

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        await self.books.record_changes(pipeline, changes)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        return await self.books.compare_and_set(pipeline, partition, expected, new)

    # -- the control plane's steps (`Capabilities.control`) ------------------------------------

    async def record_usage(self, pipeline: str, project: str, at: datetime, rows: int, nbytes: int,
                           dlq_rows: int) -> None:
        await ControlBooks(self.driver).add_usage(pipeline, project, at, rows, nbytes, dlq_rows)

    async def record_audit(self, entry: AuditEntry) -> None:
        await ControlBooks(self.driver).add_audit(entry)

    async def decide_change(self, history_id: int, decision: str, actor: str) -> bool:
        return await ControlBooks(self.driver).decide(history_id, decision, actor)
