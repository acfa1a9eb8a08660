"""The file destination: parts and a state file, published together (see the package docstring)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, CheckpointRow, DlqEntry, DlqFilter, Transaction
from conduitd.destinations.files import formats, layout, reader, refresh
from conduitd.destinations.files.dialect import FileDialect
from conduitd.destinations.files.settings import FileDestinationConfig
from conduitd.destinations.files.state import STATE_NAME, State, loads
from conduitd.destinations.files.storage import Storage, open_storage
from conduitd.destinations.files.transaction import FileTransaction
from conduitd.destinations.rollback import finish
from conduitd.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
CAPABILITIES = Capabilities(transactional_ddl=True, savepoints=False, upsert=False, prepare_ahead=True,
                            atomic_checkpoint=True, deletes=False)


def _now() -> datetime:
    return datetime.now(UTC)


class FileDestination:
    """See the package docstring. One writer per root: locally a lock on the state directory
    keeps a second one out; on S3 nothing can, so give each writer its own prefix."""

    capabilities = CAPABILITIES

    def __init__(self, config: FileDestinationConfig, *, clock: Callable[[], datetime] = _now) -> None:
        self.config = config
        self.dialect = FileDialect()
        self.clock = clock
        self.fmt = config.output_format
        self.options: dict[str, Any] = ({"indent": config.indent} if self.fmt == "json" else
                                        {"compression": config.compression} if self.fmt == "parquet" else {})
        path = config.path.rstrip("/")
        self.single: str | None = None
        """The output file's name (relative to the root's parent) in single-file mode."""
        if config.single_file_format is not None:
            parent, _, base = path.rpartition("/")
            self.single = base
            self.root = f"{parent}/.{base}.conduitd" if parent else f".{base}.conduitd"
        else:
            self.root = path
        self._storage: Storage | None = None
        self._state: State | None = None
        self._stale = False
        self._lock: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the file destination is not open")
        return self._storage

    @property
    def state(self) -> State:
        if self._state is None:
            raise RuntimeError("the file destination is not open")
        return self._state

    async def _io(self, doing: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except (OSError, pa.ArrowException) as exc:
            raise self.storage.error(exc, doing) from None

    async def open(self, *, read_only: bool = False) -> None:
        if self._storage is not None:
            raise RuntimeError("the file destination is already open")
        self._storage = open_storage(self.config, self.root)
        try:
            await self._io("opening", self._open, read_only)
        except BaseException:
            await self.close()
            raise

    def _open(self, read_only: bool) -> None:
        if read_only:
            self._state = self._load()
            return
        self.storage.ensure_root()
        if self.storage.local:
            self._take_lock()
        self._state = self._load()
        self._recover()

    def _take_lock(self) -> None:
        fd = os.open(os.path.join(self.storage.root, ".conduitd.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"file destination {self.storage.shown}: another conduitd writes to it now "
                              "(one writer per directory)") from None
        self._lock = fd

    def _load(self) -> State:
        data = self.storage.read(STATE_NAME)
        return State() if data is None else loads(data, f"{self.storage.shown}/{STATE_NAME}")

    def _recover(self) -> None:
        """Finish the renames of a commit published before a crash; remove every file of ours the
        state does not name (parts of commits that never published, temporaries)."""
        published = self.state.names()
        present = set(self.storage.files())
        if self.storage.renames:
            for name in sorted(published - present):
                if layout.temporary(name) in present:
                    self.storage.rename(layout.temporary(name), name)
                    present.add(name)
        for name in sorted(present - published):
            if layout.is_ours(name):
                log.info("file destination %s: removing %s (not published)", self.storage.shown, name)
                self.storage.delete(name)
        self._materialize()

    async def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None
        self._storage = None
        self._state = None

    async def ping(self) -> None:
        await self._io("reaching it", self.storage.files)

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        if pipeline.mode == "upsert":
            return [f"file destination {self.storage.shown} appends: it cannot upsert ({pipeline.name!r})"]
        if pipeline.mode == "full_refresh" and pipeline.unique_key:
            return [f"file destination {self.storage.shown} appends: a full refresh with `unique_key` keeps the "
                    f"last row per key, which files cannot do ({pipeline.name!r}: remove `unique_key`)"]
        return []

    async def setup(self, pipeline: PipelineConfig) -> None:
        return None  # the DLQ parts are created by the first rejected row

    # -- the transaction ---------------------------------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        if self._stale:
            await self._io("reading its state", self._reload)
        tx = FileTransaction(self.storage, self.state.copy(), self.fmt, self.options, secrets.token_hex(4),
                             self.clock, single=self.single is not None)
        try:
            yield tx
        except BaseException:
            await finish(asyncio.to_thread(tx.discard))
            raise
        try:
            await finish(self._io("publishing a commit", self._publish, tx))
        except BaseException:
            self._stale = True  # the state may or may not be published: read it again first
            raise

    def _reload(self) -> None:
        self._state = self._load()
        self._recover()
        self._stale = False

    def _publish(self, tx: FileTransaction) -> None:
        """Replace the state file (the commit point), then put the parts under their names."""
        data = tx.state.dumps()
        if self.storage.renames:
            temporary = layout.state_temporary(tx.token)
            self.storage.write(temporary, lambda stream: stream.write(data))
            self.storage.rename(temporary, STATE_NAME)
            for name in tx.written:
                if name in tx.state.names():
                    self.storage.rename(layout.temporary(name), name)
                else:
                    self.storage.delete(layout.temporary(name))  # a DLQ part replaced in this commit
        else:
            self.storage.write(STATE_NAME, lambda stream: stream.write(data))
            for name in tx.written:
                if name not in tx.state.names():
                    self.storage.delete(name)
        self._state = tx.state
        for name in tx.obsolete:
            self.storage.delete(name)
        self._materialize()

    def _materialize(self) -> None:
        """Single-file mode: write the output file from the published parts (temporary, rename)."""
        held = [t for t in self.state.tables if not refresh.is_staging(t)]
        if self.single is None or not held:
            return
        table = reader.read_table(self.storage, self.state, held[0], self.fmt)
        assert table is not None
        output = f"../{self.single}"
        if self.storage.renames:
            temporary = f"../.{self.single}.tmp"
            self.storage.write(temporary, lambda s: formats.write(s, table, self.fmt, **self.options))
            self.storage.rename(temporary, output)
        else:
            self.storage.write(output, lambda s: formats.write(s, table, self.fmt, **self.options))

    async def _commit_state(self, change: Callable[[State], int]) -> int:
        """Change the state outside any batch (a checkpoint reset) and publish it."""
        async with self._transaction() as tx:
            assert isinstance(tx, FileTransaction)
            return change(tx.state)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- mode full_refresh (see `refresh`) ---------------------------------------------------------

    def refresh_table(self, table: str) -> str:
        """The staging table a full refresh of `table` loads."""
        return refresh.staging_name(table, None)

    async def begin_refresh(self, pipeline: PipelineConfig, staging: str) -> None:
        """Start a full refresh run afresh: checkpoints reset, an empty staging table like the table."""
        async with self._transaction() as tx:
            assert isinstance(tx, FileTransaction)
            tx.obsolete += refresh.begin(tx.state, pipeline.name, pipeline.table_name, staging)

    async def finish_refresh(self, pipeline: PipelineConfig, staging: str) -> int:
        """Publish the staging parts as the table's, in one state publication; return its rows."""
        target = pipeline.table_name
        async with self._transaction() as tx:
            assert isinstance(tx, FileTransaction)
            staged, replaced = refresh.take_staging(tx.state, pipeline.name, target, staging)
            tx.obsolete += replaced
            if staged is not None:
                await tx.adopt(target, staged.parts)
                tx.obsolete += [p.name for p in staged.parts]
            found = tx.state.tables.get(target)
            return 0 if found is None else sum(p.rows for p in found.parts)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- bookkeeping outside any batch -------------------------------------------------------------

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {p: c["position"] for p, c in sorted(self.state.checkpoints.get(pipeline, {}).items())}

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        return [CheckpointRow(name, partition, c["position"], datetime.fromisoformat(c["updated_at"]))
                for name, stored in sorted(self.state.checkpoints.items()) if pipeline in (None, name)
                for partition, c in sorted(stored.items())]

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        def change(state: State) -> int:
            stored = state.checkpoints.get(pipeline, {})
            gone = [p for p in stored if partition in (None, p)]
            for p in gone:
                del stored[p]
            if not stored:
                state.checkpoints.pop(pipeline, None)
            return len(gone)
        return await self._commit_state(change)

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        found = self.state.tables.get(table)
        return None if found is None else found.as_columns()

    async def read_table(self, table: str) -> pa.Table | None:
        """Every published row of `table` (tests, and readers that go through the state file)."""
        return await self._io("reading a table", reader.read_table, self.storage, self.state, table, self.fmt)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        entries = await self._io("reading the DLQ", reader.read_dlq, self.storage, self.state, pipeline.dlq_table)
        found = [e for e in entries if e.pipeline == pipeline.name and where.rule in (None, e.rule)
                 and (where.since is None or (isinstance(e.created_at, datetime) and e.created_at >= where.since))
                 and (where.until is None or (isinstance(e.created_at, datetime) and e.created_at < where.until))]
        return found[:where.limit] if where.limit else found

    def history(self, pipeline: str) -> list[tuple[str, str | None]]:
        """The pipeline's schema changes as (kind, column), in order."""
        return [(h["kind"], h["column"]) for h in self.state.history if h["pipeline"] == pipeline]


__all__ = ["CAPABILITIES", "FileDestination"]
