"""The log-based PostgreSQL source (`type: postgres, mode: log`): the pipeline's table through a
logical replication slot (`pgoutput`), read with `pg_logical_slot_peek_binary_changes` and
decoded by `pgoutput`; first an initial snapshot of the rows already there (`snapshot`), then
the log from where the snapshot stood (`transactions`).

One partition, the table (`schema.table`). Its position is
`{"phase": "snapshot", "filter": F, "after": [key texts]}` while the snapshot is read, then
`{"phase": "log", "lsn": L, "filter": F|null}`, L the end LSN of the last transaction handed over
(null before the first), plus `"txn": E, "done": k` when only the first k changes of the
transaction ending at E are (a transaction larger than a chunk). The slot is advanced to L only
in `acknowledge`, after the destination committed the rows with L: a crash re-reads from the
slot, and what was committed (up to L) is skipped. A peek re-reads from the slot's position, so
the read-ahead of unacknowledged chunks is skipped in memory.

With the source's `op_column`, every row says what made it (`snapshot`, `insert`, `update`,
`delete`); in append mode deletes then come as rows too (see `transactions.group`).

A TRUNCATE of the table stops the pipeline (`TruncatedAtSource`, after the changes before it are
handed over): it carries no keys, and going on would leave rows in the destination that the source
no longer has. Emptying the destination table and resetting the pipeline's checkpoint reads the
table again from a new snapshot, which sees the TRUNCATE and skips it in the log.

Lag (`lag()`): `bytes`, how far the slot stands behind `pg_current_wal_lsn()` (WAL the server
keeps for it), and `seconds`, the age of the oldest change not yet acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg

from conduitd.config import PipelineConfig
from conduitd.core.records import Chunk, Position
from conduitd.errors import ConfigError, DependencyUnreachable, TruncatedAtSource
from conduitd.sources.base import Checkpoints
from conduitd.sources.pglog import pgoutput as po
from conduitd.sources.pglog.rows import Change, text_rows, to_rows
from conduitd.sources.pglog.slot import (
    ADVANCE_SQL,
    EXISTING_SQL,
    LAG_SQL,
    PEEK_SQL,
    TRUNCATE_SQL,
    setup_missing,
    slot_name,
    truncate_missing,
)
from conduitd.sources.pglog.snapshot import read_snapshot, table_shape
from conduitd.sources.pglog.transactions import SnapshotFilter, Transaction, group
from conduitd.sources.tables.catalog import quote, relation
from conduitd.sources.tables.postgres import _LOST, connect
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig

log = logging.getLogger(__name__)
_READ_AHEAD, _READ_AHEAD_CAP = 4, 200_000
_PG_EPOCH = 946684800.0
"""2000-01-01 UTC in Unix seconds: pgoutput's timestamps count microseconds from there."""


class LogSource:
    """See the module docstring; a `sources.base.Source`."""

    def __init__(self, config: PostgresSourceConfig, pipeline: PipelineConfig, *, once: bool, max_rows: int,
                 deletes: bool, unreachable_after: float) -> None:
        if pipeline.source_table is None:
            raise ConfigError(f"pipeline {pipeline.name!r}: mode log reads a `source_table`, not a query")
        self.config, self.pipeline = config, pipeline
        self.table = relation(pipeline.source_table, config.db_schema)
        self.partition = ".".join(self.table)
        self.slot = slot_name(pipeline.name)
        self.once, self.max_rows, self.deletes = once, max_rows, deletes
        self.op_column = config.op_column
        self.delete_rows = self.op_column is not None and pipeline.mode == "append"
        self.unreachable_after = unreachable_after
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # the slot serves one call at a time
        self._upto: str | None = None
        self._peeked: list[Transaction] = []
        """The transactions the last peek returned (from the slot's position then)."""
        self._types: dict[str, str] = {}
        self._type_names: dict[tuple[int, int], str] = {}
        self._lag: dict[str, float] = {}
        self._problem: str | None = None
        self._epoch = 0
        self._acknowledged: Position = None
        self._acknowledging = asyncio.Event()

    @property
    def epoch(self) -> int:
        return self._epoch

    def lag(self) -> dict[str, dict[str, float]]:
        return {self.partition: dict(self._lag)} if self._lag else {}

    def problem(self) -> str | None:
        return self._problem

    async def resync(self) -> bool:
        return False  # one reader per slot: a lost compare-and-set means a second daemon, stop

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate() if conn.is_in_transaction() else await conn.close()

    async def _open(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        conn = await connect(self.config)
        await conn.execute("SET default_transaction_read_only = off")  # advancing a slot writes
        publication, slot, wal_level = await conn.fetchrow(EXISTING_SQL, self.slot)
        missing = setup_missing(wal_level, publication, slot, self.slot)
        if missing:
            await conn.close()
            raise ConfigError(f"pipeline {self.pipeline.name!r}: mode log: {missing}")
        if not await conn.fetchval(TRUNCATE_SQL, self.slot):
            await conn.close()
            raise ConfigError(f"pipeline {self.pipeline.name!r}: mode log: {truncate_missing(self.slot)}")
        if self.once and self._upto is None:
            self._upto = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        self._conn = conn
        return conn

    async def _retrying(self, what: str) -> asyncpg.Connection:
        """A usable connection; a lost one is reopened with backoff (under --once for
        `unreachable_after` seconds, then DependencyUnreachable)."""
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                conn = await self._open()
                self._problem = None
                return conn
            except (*_LOST, DependencyUnreachable) as exc:
                self._problem = f"{what}: {exc}"
                if self.once and time.monotonic() - started > self.unreachable_after:
                    raise DependencyUnreachable(self._problem) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        conn = await self._retrying("opening the replication slot")
        if self.op_column is not None:
            types, _ = await table_shape(conn, f"{quote(self.table[0])}.{quote(self.table[1])}", ())
            self._check_op_column(types)
        position: dict[str, Any] | None = (await checkpoints.committed()).get(self.partition)
        failing_since: float | None = None
        while position is None or position.get("phase") == "snapshot":
            try:
                async for chunk in self._snapshot(position, stop):
                    yield chunk
                    position, failing_since = chunk.end, None
                if stop.is_set():
                    return
            except (*_LOST, DependencyUnreachable) as exc:
                # Resume after the last chunk handed over, in a new snapshot (see `transactions`).
                self._problem = f"reading the snapshot of {self.partition}: {exc}"
                log.warning("pipeline %s: %s; resuming", self.pipeline.name, self._problem,
                            extra={"pipeline": self.pipeline.name})
                failing_since = failing_since or time.monotonic()
                if self.once and time.monotonic() - failing_since > self.unreachable_after:
                    raise DependencyUnreachable(self._problem) from None
                await asyncio.sleep(0.5)
        self._problem = None
        if position.get("lsn"):
            # The run that committed up to this position may have stopped before it advanced the
            # slot (a SIGTERM or crash between its commit and `acknowledge`): the rows are written,
            # so the slot moves on now, even when this run finds nothing more to commit.
            await self.acknowledge({self.partition: position})
        async for chunk in self._log(position, stop):
            yield chunk

    async def _snapshot(self, start: dict[str, Any] | None, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        kept = SnapshotFilter.load(start.get("filter")) if start else None
        after = start.get("after") if start else None
        name = f"{quote(self.table[0])}.{quote(self.table[1])}"
        conn = await connect(self.config)
        try:
            begin: Position = start
            async for found, types, key, rows in read_snapshot(conn, name, self.pipeline.unique_key, after,
                                                                self.max_rows):
                if not key:
                    raise ConfigError(f"pipeline {self.pipeline.name!r}: {self.partition} has no primary key: "
                                      "set unique_key")
                chosen = (kept or found).dump()
                end: dict[str, Any]
                if rows.num_rows < self.max_rows:
                    end = {"phase": "log", "lsn": None, "filter": chosen}
                else:
                    end = {"phase": "snapshot", "filter": chosen,
                           "after": [rows.column(k)[rows.num_rows - 1].as_py() for k in key]}
                self._types.update(types)
                self._check_op_column(types)
                read = text_rows(rows, types, self.partition, begin, op="snapshot", op_column=self.op_column)
                yield Chunk(self.partition, begin, end, read.table, read.rejects, epoch=self._epoch)
                begin = end
                if stop.is_set():
                    return
        finally:
            conn.terminate()  # nothing to end cleanly: the snapshot only read

    async def _log(self, start: dict[str, Any], stop: asyncio.Event) -> AsyncIterator[Chunk]:
        begin = start
        fresh: list[Transaction] = []
        while not stop.is_set():
            # What the last peek read beyond the chunks handed over is used first: a peek decodes
            # again everything the slot has not been advanced past.
            handed = po.parse_lsn(begin["lsn"]) if begin.get("lsn") else -1
            fresh = [t for t in fresh if t.end_lsn > handed] or await self._peek(begin)
            if not fresh:
                if self.once:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_interval)
                continue
            try:
                end, changes = self._take(begin, fresh)
            except TruncatedAtSource:
                await self._committed(start, begin, stop)  # what came before is written first
                raise
            read = to_rows(changes, self._types, self.partition, begin, op_column=self.op_column)
            yield Chunk(self.partition, begin, end, read.table, read.rejects, epoch=self._epoch,
                        deletes=read.deletes)
            begin = end

    async def _committed(self, start: Position, position: Position, stop: asyncio.Event) -> None:
        """Return once `position` (handed over by this run) is acknowledged, or on `stop`."""
        while position != start and self._acknowledged != position and not stop.is_set():
            self._acknowledging.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acknowledging.wait(), 1.0)

    def _take(self, begin: dict[str, Any], fresh: list[Transaction]) -> tuple[dict[str, Any], list[Change]]:
        """Changes of whole transactions after `begin`, at most `max_rows` of them (a larger
        transaction is split), and the position after them."""
        filter_ = SnapshotFilter.load(begin.get("filter"))
        lsn, partial = begin.get("lsn"), begin.get("txn")
        done = int(begin.get("done", 0))
        taken: list[Change] = []
        for txn in fresh:
            seen = filter_ is not None and filter_.seen(txn.xid, txn.end_lsn)
            if txn.truncated and not seen:
                if taken:
                    break  # hand over what came before it; the next call stops there
                raise TruncatedAtSource(
                    f"pipeline {self.pipeline.name!r}: {self.partition} was truncated at the source (the "
                    f"transaction ending at {po.lsn_text(txn.end_lsn)}); a TRUNCATE carries no keys, so the "
                    f"destination cannot follow it. Everything before it is written. To go on, empty the destination "
                    f"table {self.pipeline.table_name!r} and run `conduitd checkpoints reset -p {self.pipeline.name}`: "
                    "the next run reads the table again from a new snapshot")
            changes = [] if seen else txn.changes
            skip = done if partial == po.lsn_text(txn.end_lsn) else 0
            room = self.max_rows - len(taken)
            if len(changes) - skip > room and taken:
                break
            if len(changes) - skip > room:  # alone larger than a chunk: hand over part of it
                taken.extend(changes[skip:skip + room])
                return self._after(lsn, filter_, txn, skip + room), taken
            taken.extend(changes[skip:])
            lsn = po.lsn_text(txn.end_lsn)
            partial, done = None, 0
            if filter_ is not None and txn.end_lsn > filter_.until:
                filter_ = None
        return self._after(lsn, filter_, None, 0), taken

    @staticmethod
    def _after(lsn: str | None, filter_: SnapshotFilter | None, txn: Transaction | None, done: int) -> dict[str, Any]:
        end: dict[str, Any] = {"phase": "log", "lsn": lsn, "filter": None if filter_ is None else filter_.dump()}
        if txn is not None:
            end.update(txn=po.lsn_text(txn.end_lsn), done=done)
        return end

    async def _peek(self, begin: dict[str, Any]) -> list[Transaction]:
        """The transactions after `begin` (those ending after its LSN, the partial one included)."""
        read = po.parse_lsn(begin["lsn"]) if begin.get("lsn") else -1
        # The slot stands (at the latest) where the last peek started: skip what was handed over since.
        want = sum(t.messages for t in self._peeked if t.end_lsn <= read) + self._read_ahead() + 16
        while True:
            conn = await self._retrying("reading the replication slot")
            try:
                async with self._lock:
                    flushed = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
                    records = await conn.fetch(PEEK_SQL, self.slot, self._upto, want, self.slot)
                    if not records and not self.once:
                        # Nothing of this table up to `flushed` (the peek decoded at least that far),
                        # and nothing handed over unacknowledged: let the server recycle that WAL
                        # (PostgreSQL 15+ sends nothing for other tables' transactions).
                        await conn.execute(ADVANCE_SQL, self.slot, flushed)
                    await self._note_lag(conn, records)
                    await self._load_types(conn, records)
            except _LOST as exc:
                self._problem = f"reading the replication slot: {exc}"
                await self.close()
                continue
            txns = group((r[0] for r in records), self.table, self._types, lambda oid, mod: self._type_names[oid, mod],
                         deletes=self.deletes, delete_rows=self.delete_rows, after=read)
            self._check_op_column(self._types)
            fresh = [t for t in txns if t.end_lsn > read]
            if not fresh and len(records) >= want:
                want *= 2  # only what was handed over already: look further
                continue
            self._peeked = txns
            return fresh

    def _check_op_column(self, types: Mapping[str, str]) -> None:
        if self.op_column is not None and self.op_column in types:
            raise ConfigError(f"source {self.config.name!r}: op_column {self.op_column!r} is a column of "
                              f"{self.partition} too: choose another name (pipeline {self.pipeline.name!r})")

    def _read_ahead(self) -> int:
        """Changes one peek asks for beyond those handed over: a few chunks (kept as bytes until
        taken), since every peek decodes again what the slot was not advanced past yet."""
        return max(self.max_rows, min(_READ_AHEAD * self.max_rows, _READ_AHEAD_CAP))

    async def _load_types(self, conn: asyncpg.Connection, records: list[asyncpg.Record]) -> None:
        for oid, modifier in _column_types(records):
            if (oid, modifier) not in self._type_names:
                self._type_names[oid, modifier] = await conn.fetchval("SELECT format_type($1, $2)", oid, modifier)

    async def _note_lag(self, conn: asyncpg.Connection, records: list[asyncpg.Record]) -> None:
        row = await conn.fetchrow(LAG_SQL, self.slot)
        oldest = next((po.decode(r[0]) for r in records if r[0][:1] == b"B"), None)
        age = 0.0
        if isinstance(oldest, po.Begin):
            age = max(0.0, time.time() - (_PG_EPOCH + oldest.commit_time / 1e6))
        self._lag = {"bytes": float(row[0] or 0.0) if row else 0.0, "seconds": age}

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        position = positions.get(self.partition)
        self._acknowledged = position
        self._acknowledging.set()
        if not isinstance(position, dict) or position.get("phase") != "log" or not position.get("lsn"):
            return
        try:
            conn = await self._open()
            async with self._lock:
                await conn.execute(ADVANCE_SQL, self.slot, position["lsn"])
        except (*_LOST, DependencyUnreachable) as exc:  # the next acknowledge advances it further
            log.warning("pipeline %s: could not advance replication slot %s: %s", self.pipeline.name, self.slot,
                        exc, extra={"pipeline": self.pipeline.name})


def _column_types(records: list[asyncpg.Record]) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for record in records:
        if record[0][:1] == b"R":
            message = po.decode(record[0])
            if isinstance(message, po.Relation):
                found.update((c.type_oid, c.type_modifier) for c in message.columns)
    return found
