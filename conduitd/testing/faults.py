"""Failures on cue, at a named step of a destination's transaction.

The steps are the `Transaction` methods the commit protocol calls, plus BEGIN and COMMIT:

    begin, table_columns, run_ddl, savepoint, write_rows, screen_rows, delete_rows,
    write_rejects, delete_rejects, record_changes, compare_and_set, record_usage, commit

A `Faults` value counts every step a destination runs (`trace`) and, when armed with a
`FailAt`, raises the chosen exception instead of running the n-th call of a step (or of any
step: `step="any"`). It fires once, then the destination behaves again, so a test can check
that the failed batch left nothing behind and that a retry commits it exactly once.

`FaultyDestination` puts a `Faults` in front of ANY destination (a real one included): the
failure is raised inside its open transaction, before the step runs, so the destination rolls
back exactly as it would after a crash at that point. `MemoryDestination` has one built in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.records import Position, Reject, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, CheckpointRow, Destination, DlqEntry, DlqFilter, Transaction
from conduitd.destinations.control import AuditEntry, ControlTransaction
from conduitd.errors import TransientError

STEPS: tuple[str, ...] = ("begin", "table_columns", "run_ddl", "savepoint", "write_rows", "screen_rows",
                          "delete_rows", "write_rejects", "delete_rejects", "record_changes", "compare_and_set",
                          "record_usage", "commit")
ANY = "any"

ErrorSpec = BaseException | type[BaseException] | Callable[[], BaseException]
"""An exception to raise: an instance, a class (called with a message), or a factory."""


class Crash(BaseException):
    """A crash-like failure: not an `Exception`, so no `except Exception` takes it, like the
    process dying or the task being cancelled in the middle of a step."""


class ContractViolation(AssertionError):
    """The runtime broke the contract of `conduitd.destinations.base` (the in-memory twin checks
    it: a savepoint without the capability, a COMMIT after an unhandled refusal, a payload that is
    not the encoding of the rows written...)."""


def make_error(spec: ErrorSpec, step: str) -> BaseException:
    """The exception `spec` describes, for a failure injected at `step`."""
    if isinstance(spec, BaseException):
        return spec
    error: BaseException = (spec(f"failure injected at step {step!r} (conduitd.testing)") if isinstance(spec, type)
                            else spec())
    return error


@dataclass(frozen=True)
class FailAt:
    """Raise `error` instead of running the `call`-th call (from 1, counted from when it was
    armed) of `step`, or of any step when `step` is "any"."""

    step: str = ANY
    call: int = 1
    error: ErrorSpec = TransientError

    def __post_init__(self) -> None:
        if self.step != ANY and self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}; steps: {', '.join(STEPS)} or {ANY!r}")
        if self.call < 1:
            raise ValueError("call counts from 1")


class Faults:
    """See the module docstring."""

    def __init__(self, plan: FailAt | str | None = None) -> None:
        self.trace: list[str] = []
        """Every step run, in order (`clear` empties it)."""
        self.fired: list[tuple[str, BaseException]] = []
        """(step, exception) of every failure raised."""
        self._plan: FailAt | None = None
        self._seen = 0
        if plan is not None:
            self.arm(plan)

    @property
    def armed(self) -> bool:
        return self._plan is not None

    def arm(self, step: FailAt | str = ANY, *, call: int = 1, error: ErrorSpec = TransientError) -> None:
        """Fail at `step` (a `FailAt`, or a step name with `call` and `error`)."""
        self._plan = step if isinstance(step, FailAt) else FailAt(step, call, error)
        self._seen = 0

    def disarm(self) -> None:
        self._plan = None

    def clear(self) -> None:
        self.trace.clear()
        self.fired.clear()

    def step(self, name: str) -> None:
        """Called as step `name` is about to run: record it, and raise if this is the failing call."""
        self.trace.append(name)
        plan = self._plan
        if plan is None or plan.step not in (ANY, name):
            return
        self._seen += 1
        if self._seen < plan.call:
            return
        self._plan = None
        error = make_error(plan.error, name)
        self.fired.append((name, error))
        raise error


class FaultyTransaction:
    """A `Transaction` that passes each step through `faults` first."""

    def __init__(self, inner: Transaction, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        self.faults.step("table_columns")
        return await self.inner.table_columns(table)

    async def run_ddl(self, statement: str) -> None:
        self.faults.step("run_ddl")
        await self.inner.run_ddl(statement)

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        return self._savepoint()

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        self.faults.step("savepoint")
        async with self.inner.savepoint():
            yield

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self.faults.step("write_rows")
        await self.inner.write_rows(table, rows, columns, key, payload)

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        self.faults.step("screen_rows")
        return await self.inner.screen_rows(table, rows, columns, key)

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        self.faults.step("delete_rows")
        return await self.inner.delete_rows(table, keys)

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> Sequence[Reject] | None:
        self.faults.step("write_rejects")
        return await self.inner.write_rejects(dlq_table, pipeline, rejects)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        self.faults.step("delete_rejects")
        return await self.inner.delete_rejects(dlq_table, ids)

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        self.faults.step("record_changes")
        await self.inner.record_changes(pipeline, changes)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        self.faults.step("compare_and_set")
        return await self.inner.compare_and_set(pipeline, partition, expected, new)

    # -- the control plane's steps (`Capabilities.control`), where the destination has them ---

    def _control(self) -> ControlTransaction:
        if not isinstance(self.inner, ControlTransaction):
            raise TypeError("the destination keeps no control tables (Capabilities.control is false)")
        return self.inner

    async def record_usage(self, pipeline: str, project: str, at: datetime, rows: int, nbytes: int,
                           dlq_rows: int) -> None:
        self.faults.step("record_usage")
        await self._control().record_usage(pipeline, project, at, rows, nbytes, dlq_rows)

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._control().record_audit(entry)

    async def decide_change(self, history_id: int, decision: str, actor: str) -> bool:
        return await self._control().decide_change(history_id, decision, actor)


class FaultyDestination:
    """Any destination, with `faults` in front of its transactions' steps (see the module
    docstring). Everything else is the destination's own."""

    def __init__(self, inner: Destination, faults: Faults | FailAt | str | None = None) -> None:
        self.inner = inner
        self.faults = faults if isinstance(faults, Faults) else Faults(faults)

    @property
    def dialect(self) -> Dialect:
        return self.inner.dialect

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        self.faults.step("begin")
        async with self.inner.transaction() as tx:
            yield FaultyTransaction(tx, self.faults)
            # Raised inside the destination's transaction: it rolls back as after a failed COMMIT.
            self.faults.step("commit")

    async def open(self, *, read_only: bool = False) -> None:
        await self.inner.open(read_only=read_only)

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return await self.inner.write_problems(pipeline)

    async def setup(self, pipeline: PipelineConfig) -> None:
        await self.inner.setup(pipeline)

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return await self.inner.load_checkpoints(pipeline)

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        return await self.inner.list_checkpoints(pipeline)

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        return await self.inner.reset_checkpoints(pipeline, partition)

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await self.inner.table_columns(table)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        return await self.inner.read_dlq(pipeline, where)
