"""The in-memory destination: the whole `Destination` contract with no database, and failures
on cue at any step of a transaction.

    store = MemoryStore()
    destination = MemoryDestination(store, fail_at=FailAt("compare_and_set", error=Crash))

A transaction works on a private copy of the store's state and puts it in place at COMMIT, so
it is all or nothing; savepoints, refused rows, the checkpoint compare-and-set, DLQ tables and
schema history behave as in the SQL destinations (see `memory_transaction`). DDL is the small
language of `MemoryDialect` (`memory_dialect`), parsed and run for real. What it can be told:

- `capabilities`: any `Capabilities`; without `transactional_ddl`, DDL takes effect at once and
  stays when the transaction rolls back; without `savepoints` or `upsert`, using them is a
  `ContractViolation`;
- `refuse(table, row) -> reason | None`: rows it refuses besides null keys, values that do not
  fit their column and repeated primary keys; `refusal`: how a write reports them;
  `screens`: whether `screen_rows` finds them ahead;
- `fail_at` (or `destination.faults.arm(...)`): raise a chosen exception at a chosen step;
- `unreachable`: `open` and `ping` raise DependencyUnreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

import orjson

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, CheckpointRow, DlqEntry, DlqFilter, Transaction
from conduitd.errors import DependencyUnreachable
from conduitd.testing.faults import ContractViolation, FailAt, Faults, FaultyTransaction
from conduitd.testing.memory_dialect import MemoryDialect
from conduitd.testing.memory_store import MemoryStore
from conduitd.testing.memory_transaction import MemoryTransaction, Refusal, Refuse

CAPABILITIES = Capabilities(transactional_ddl=True, savepoints=True, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True)


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryDestination:
    """See the module docstring. `name` appears in its errors; `password` is a secret it holds
    (for the secrets contract) and never shows."""

    def __init__(self, store: MemoryStore | None = None, *, capabilities: Capabilities = CAPABILITIES,
                 dialect: MemoryDialect | None = None, refuse: Refuse | None = None,
                 refusal: Refusal = "names_row", screens: bool = False, fail_at: FailAt | str | None = None,
                 unreachable: bool = False, name: str = "memory", password: str | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.store = store if store is not None else MemoryStore()
        self.capabilities = capabilities
        self.dialect = dialect or MemoryDialect()
        self.refuse = refuse
        self.refusal: Refusal = refusal
        self.screens = screens
        self.faults = Faults(fail_at)
        self.unreachable = unreachable
        self.name = name
        self._password = password
        self.clock = clock
        self._open = False
        self._in_transaction = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self, *, read_only: bool = False) -> None:
        if self._open:
            raise RuntimeError("the memory destination is already open")
        await self.ping()
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        if self.unreachable:
            raise DependencyUnreachable(f"memory destination {self.name!r} is unreachable (it was told to be)")

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the memory destination is not open")

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []

    async def setup(self, pipeline: PipelineConfig) -> None:
        self._check_open()
        if pipeline.dlq.type == "table":
            async with self.store.writing():
                self.store.state.dlq.setdefault(pipeline.dlq_table, [])

    # -- the transaction ---------------------------------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        self._check_open()
        if self._in_transaction:
            raise ContractViolation("a second transaction opened on a destination while one is open")
        self.faults.step("begin")
        self._in_transaction = True
        try:
            async with self.store.writing():
                work = MemoryTransaction(self, self.store.state.copy(), self.clock)
                try:
                    yield FaultyTransaction(work, self.faults)
                    self.faults.step("commit")
                    if work.aborted is not None:
                        raise ContractViolation(f"COMMIT of a transaction aborted by a refused write ({work.aborted})")
                except BaseException:
                    self.store.rollbacks += 1  # the copy is dropped: nothing of it was committed
                    raise
                self.store.state = work.state
                self.store.commits += 1
        finally:
            self._in_transaction = False

    # -- bookkeeping outside any batch -------------------------------------------------------------

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        self._check_open()
        return self.store.checkpoints(pipeline)

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        self._check_open()
        return [CheckpointRow(p, partition, orjson.loads(c.position), c.updated_at)
                for (p, partition), c in sorted(self.store.state.checkpoints.items())
                if pipeline is None or p == pipeline]

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        self._check_open()
        async with self.store.writing():
            stored = self.store.state.checkpoints
            gone = [k for k in stored if k[0] == pipeline and partition in (None, k[1])]
            for k in gone:
                del stored[k]
        return len(gone)

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        self._check_open()
        return self.store.columns(table)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        self._check_open()
        found = [e for e in self.store.dlq(pipeline.dlq_table) if e.pipeline == pipeline.name
                 and (where.rule is None or e.rule == where.rule)
                 and (where.since is None or (isinstance(e.created_at, datetime) and e.created_at >= where.since))
                 and (where.until is None or (isinstance(e.created_at, datetime) and e.created_at < where.until))]
        return found[:where.limit] if where.limit else found
