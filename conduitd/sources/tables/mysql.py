"""The MySQL/MariaDB table source (`type: mysql`): a pipeline's `source_table` or `query`, read by
polling with a keyset cursor (`cursor`, `mysql_sql`), bounded against late commits (below),
streamed unbuffered, its row packets taken from the connection as they are and cut into columns
(`mysql_wire`), then turned into Arrow with the catalog's types (`mysql_catalog`).

The session is read only (`SET SESSION TRANSACTION READ ONLY`, each read in its own `START
TRANSACTION READ ONLY`), REPEATABLE READ, in UTC (`time_zone = '+00:00'`), utf8mb4; nothing is decoded
on the way, so every value reaches Arrow as the server's own text.

The late-commit bound (`information_schema.INNODB_TRX`: needs the PROCESS privilege; without it
a warning says once that the guard is off):

- timestamp: a row's cursor is `NOW()` of the statement that wrote it, which starts before its
  transaction shows in INNODB_TRX, and `trx_started` has whole seconds (and INNODB_TRX is a cache
  up to 0.1 s old). Rows are read strictly below `least(now(6), oldest trx_started) - 1 s`, the
  oldest over the other sessions' transactions that write (a real `trx_id`), server-wide: InnoDB
  does not say which tables a transaction wrote to. Known gap, as in PostgreSQL: a statement
  that takes its `NOW()` and then waits more than that second (a metadata lock) before its
  transaction starts is not seen.
- sequential: an AUTO_INCREMENT hands out values in order, so a value at or below the largest
  `M` seen at time `t` was handed out before `t`, by a transaction started before `t`. `M` is
  safe once no transaction that writes started at or before `t` (INNODB_TRX, seconds rounded
  down, so this is exact); the bound is the largest safe `M`.
- cursor: no guard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

import asyncmy
import pyarrow as pa
from asyncmy.cursors import SSCursor
from asyncmy.errors import MySQLError

from conduitd.config import PipelineConfig
from conduitd.core.records import Reject
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable
from conduitd.sources.tables.catalog import relation
from conduitd.sources.tables.cursor import Plan, resumes, window_of
from conduitd.sources.tables.mysql_catalog import (
    decode_columns,
    empty,
    parameter,
    position_text,
)
from conduitd.sources.tables.mysql_errors import ACCESS, LOST, NO_PRIVILEGE, code_of, message
from conduitd.sources.tables.mysql_plan import fetch_all, plan_for
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig
from conduitd.sources.tables.mysql_sql import ALIAS, OLDEST_WRITER_SQL, largest_sql, ref, select_sql
from conduitd.sources.tables.mysql_wire import WireRows, read_rows
from conduitd.sources.tables.poller import PollingSource, Read

log = logging.getLogger(__name__)

_HELD_WARNING = 60.0
"""Seconds a running write transaction may hold the bound back before it is logged."""
_PROBE = 500
"""Keys looked up at the source per statement in a key scan."""
_MARGIN = Decimal(1)


def _decoders_off() -> dict[Any, Any]:
    """asyncmy's conversions without its decoders: every value arrives as text (binary as bytes)."""
    from asyncmy import converters

    return {k: v for k, v in converters.conversions.items() if not isinstance(k, int)}


async def connect(config: MysqlSourceConfig) -> Any:
    """A connection with the session set; ConfigError when the login is refused,
    DependencyUnreachable when the server cannot be reached."""
    params = config.connect_params
    where = f"MySQL at {params.where()}"
    try:
        conn = await asyncio.wait_for(asyncmy.connect(
            host=params.host, port=params.port, user=params.user or "", password=params.password or "",
            database=params.database, charset="utf8mb4", autocommit=True, conv=_decoders_off(),
            connect_timeout=config.connect_timeout), config.connect_timeout + 5)
    except MySQLError as exc:
        if code_of(exc) in ACCESS:
            raise ConfigError(f"source {config.name!r}: {where} refused user {params.user!r}: "
                              f"{message(exc)}") from None
        raise DependencyUnreachable(f"cannot connect to {where}: {message(exc)}") from None  # the poller adds the name
    except (OSError, TimeoutError, EOFError) as exc:
        raise DependencyUnreachable(f"cannot connect to {where}: {str(exc) or type(exc).__name__}") from None
    try:
        async with conn.cursor() as cursor:
            for statement in ("SET time_zone = '+00:00'", "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                              "SET SESSION TRANSACTION READ ONLY"):
                await cursor.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass
class Holder:
    """The oldest other transaction that writes: it holds the bound back."""

    thread: int | None = None
    trx: str | None = None
    age: float = 0.0


@dataclass
class TimedSequence:
    """See the module docstring (sequential)."""

    seen: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    """(largest value, the Unix time it was read) not yet known safe."""
    safe: Decimal | None = None

    def observe(self, largest: Decimal | None, at: Decimal, oldest_start: Decimal | None) -> Decimal | None:
        """After a poll read `largest` at `at` and then saw the oldest writer's start (None: none
        runs): the bound (None: nothing is safe yet)."""
        if largest is not None and (not self.seen or largest > self.seen[-1][0]):
            self.seen.append((largest, at))
        still = []
        for value, when in self.seen:
            if oldest_start is None or oldest_start > when:
                self.safe = value if self.safe is None else max(self.safe, value)
            else:
                still.append((value, when))
        self.seen = still
        return self.safe


Rows = WireRows
"""A read's rows as the server sent them (`mysql_wire`)."""


@dataclass(frozen=True)
class _Ahead:
    """A read started ahead: what it reads (plan, limit, from where) and the task reading it (its
    rows; None when the bound allowed nothing)."""

    plan: Plan
    limit: int
    after: tuple[Any, ...]
    task: asyncio.Task[Rows | None]


class MysqlReader:
    """The MySQL/MariaDB side of a polling source (`poller.TableReader`)."""

    errors: tuple[type[BaseException], ...] = (MySQLError, OSError, TimeoutError, EOFError)
    read_ahead = True
    """Read the next chunk after a full one while this one is decoded and passed on: the server
    works on it (a secondary index range and its row lookups) meanwhile."""

    def __init__(self, config: MysqlSourceConfig, pipeline: PipelineConfig) -> None:
        self.config = config
        self.pipeline = pipeline
        self.where = f"MySQL at {config.connect_params.where()}"
        self._conn: Any = None
        self._holder = Holder()
        self._warned_holder: int | None = None
        self._guard_off_warned = False
        self._sequence = TimedSequence()
        self._cursor_age: float | None = None
        self._ahead: _Ahead | None = None

    async def connect(self) -> None:
        await self.close()
        self._conn = await connect(self.config)

    async def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:  # the connection is closed below: a read cut short leaves nothing behind
            ahead.task.cancel()
            await asyncio.gather(ahead.task, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.ensure_closed(), 5)
            except (TimeoutError, OSError, EOFError, MySQLError):
                conn.close()

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise asyncmy.errors.InterfaceError(0, "not connected")
        return self._conn

    async def plan(self) -> Plan:
        return await plan_for(self.conn, self.config, self.pipeline)

    def lost(self, exc: BaseException) -> bool:
        return not isinstance(exc, MySQLError) or code_of(exc) in LOST or code_of(exc) is None

    def failure(self, exc: BaseException) -> ConduitError:
        return ConduitError(f"source {self.config.name!r}, pipeline {self.pipeline.name!r}: {message(exc)}")

    async def present_keys(self, plan: Plan, names: Sequence[str], keys: Sequence[Sequence[str]]) -> set[int]:
        """Indexes of the keys the source still has, looked up 500 at a time; each key's texts are
        cast to its columns' types on the server (as positions are)."""
        await self._finish_ahead()  # the connection is the key scan's now
        by_name = {c.name: c for c in plan.columns}
        columns = [by_name[n] for n in names]
        found: set[int] = set()
        for start in range(0, len(keys), _PROBE):
            part = keys[start:start + _PROBE]
            probes = " UNION ALL ".join(
                "SELECT %s AS n, " + ", ".join(f"{parameter(c)} AS k{i}" for i, c in enumerate(columns))
                for _ in part)
            match = " AND ".join(f"{ref(c)} = probe.k{i}" for i, c in enumerate(columns))
            sql = (f"SELECT probe.n FROM ({probes}) AS probe WHERE EXISTS "
                   f"(SELECT 1 FROM {plan.source} AS {ALIAS} WHERE {match})")
            args = [str(v) for j, key in enumerate(part) for v in (start + j, *key)]
            probed = await self._stream(sql, args, 1)
            found |= {int(probed.row(i)[0] or 0) for i in range(len(probed))}
        return found

    def lag(self) -> dict[str, float]:
        units: dict[str, float] = {}
        if self._cursor_age is not None:
            units["seconds"] = self._cursor_age
        held = self._holder.thread is not None
        units["watermark_held_seconds"] = self._holder.age if held else 0.0
        if held:
            units["watermark_holder_thread"] = float(self._holder.thread or 0)
        return units

    async def read(self, plan: Plan, after: dict[str, Any] | None, limit: int, partition: str) -> Read | None:
        ahead = await self._take_ahead(plan, after, limit)
        rows = await (ahead if ahead is not None else self._fetch(plan, after, limit))
        if rows is None:
            return None  # every value seen may still be joined by a running transaction's
        if not rows:
            return Read(empty(plan.columns), [], None, 0)
        order = ([plan.cursor] if plan.cursor else []) + list(plan.key)
        index = {c.name: i for i, c in enumerate(plan.columns)}
        hidden = [(index[c.name], c) for c in order]

        def texts(at: int) -> list[str]:
            row = rows.row(at)
            return [position_text(c, row[i]) for i, c in hidden]

        last = texts(len(rows) - 1)
        if self.read_ahead and len(rows) >= limit and window_of(after) is None:
            self._read_ahead(plan, plan.position_after(last, after), limit)

        def decode() -> tuple[pa.Table, list[Reject]]:
            return decode_columns(rows.columns(), plan.columns, partition,
                                  lambda i: plan.position_after(texts(i), after))

        table, rejects = await asyncio.to_thread(decode)
        if plan.strategy == "timestamp" and plan.cursor is not None:
            self._note_cursor_age(table, plan.cursor.name)
        return Read(table, rejects, last, len(rows), table.nbytes)

    async def _fetch(self, plan: Plan, after: dict[str, Any] | None, limit: int) -> Rows | None:
        """Up to `limit` rows after `after` below the bound taken now; None when the bound allows
        nothing yet."""
        bound = await self._bound(plan, after)
        if plan.cursor is not None and plan.strategy == "sequential" and bound is None:
            return None
        sql, args = select_sql(plan, after, bound, limit)
        return await self._stream(sql, args, len(plan.columns))

    def _read_ahead(self, plan: Plan, after: dict[str, Any], limit: int) -> None:
        """Start reading the chunk after a full one: the next `read` from that position takes it
        (its own bound and transaction, as if read then)."""
        task = asyncio.create_task(self._fetch(plan, after, limit), name=f"read ahead {self.pipeline.name}")
        self._ahead = _Ahead(plan, limit, resumes(after), task)

    async def _take_ahead(self, plan: Plan, after: dict[str, Any] | None,
                          limit: int) -> asyncio.Task[Rows | None] | None:
        """The read started ahead from `after`, if there is one; any other (a resync, a moved
        lease) is finished and dropped, and the connection is free again."""
        ahead = self._ahead
        if ahead is not None and ahead.plan is plan and ahead.limit == limit and ahead.after == resumes(after):
            self._ahead = None
            return ahead.task
        await self._finish_ahead()
        return None

    async def _finish_ahead(self) -> None:
        """Let a read started ahead end and drop its rows, its outcome unseen (a lost connection
        shows on the next statement). It is not cancelled: a result cut short would leave its
        rows unread on the connection."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await asyncio.gather(ahead.task, return_exceptions=True)

    async def _stream(self, sql: str, args: list[str], width: int) -> WireRows:
        """The rows of one SELECT of `width` columns in a read-only transaction, read unbuffered
        as the server sends them (`mysql_wire`)."""
        conn = self.conn
        async with conn.cursor() as control:
            await control.execute("START TRANSACTION READ ONLY")
            cursor = conn.cursor(SSCursor)
            try:
                await cursor.execute(sql, tuple(args))
                rows = await read_rows(conn, cursor, width)
            finally:
                await cursor.close()
            await control.execute("COMMIT")
        return rows

    async def _bound(self, plan: Plan, after: dict[str, Any] | None) -> str | None:
        if plan.cursor is None or plan.strategy == "cursor":
            return None
        if plan.strategy == "timestamp":
            now, oldest = await self._oldest_writer()
            bound = (now if oldest is None else min(now, oldest)) - _MARGIN
            lookback = self.pipeline.incremental.lookback_seconds if self.pipeline.incremental else 0.0
            bound = min(bound, now - Decimal(str(lookback)))
            return f"{bound:.6f}"
        (at, largest), = await fetch_all(self.conn, largest_sql(plan))
        _, oldest = await self._oldest_writer()
        safe = self._sequence.observe(None if largest is None else Decimal(largest), Decimal(at), oldest)
        read = (after or {}).get("cursor")
        if read is not None and (safe is None or Decimal(str(read)) > safe):
            safe = Decimal(str(read))  # read up to there already: the bound is never below it
        return None if safe is None else str(safe)

    async def _oldest_writer(self) -> tuple[Decimal, Decimal | None]:
        """(now, start of the oldest other transaction that writes, or None) as Unix times."""
        try:
            (now, started, thread, trx), = await fetch_all(self.conn, OLDEST_WRITER_SQL)
        except MySQLError as exc:
            if code_of(exc) not in NO_PRIVILEGE:
                raise
            self._warn_guard_off(exc)
            (now,), = await fetch_all(self.conn, "SELECT UNIX_TIMESTAMP(NOW(6))")
            return Decimal(now), None
        if started is None:
            self._holder = Holder()
            return Decimal(now), None
        self._holder = Holder(int(thread), str(trx), float(Decimal(now) - Decimal(started)))
        self._warn_about_holder()
        return Decimal(now), Decimal(started)

    def _warn_guard_off(self, exc: BaseException) -> None:
        if not self._guard_off_warned:
            self._guard_off_warned = True
            log.warning("pipeline %s: the late-commit guard is off: user %r may not see other sessions' "
                        "transactions in information_schema.INNODB_TRX (grant it PROCESS): a transaction that "
                        "commits late may be skipped (%s)", self.pipeline.name, self.config.connect_params.user,
                        message(exc), extra={"pipeline": self.pipeline.name})

    def _warn_about_holder(self) -> None:
        holder = self._holder
        if holder.thread is not None and holder.age > _HELD_WARNING and self._warned_holder != holder.thread:
            self._warned_holder = holder.thread
            log.warning("pipeline %s: the transaction of MySQL thread %s (trx %s), open for %.0f s, holds the read "
                        "back: rows after its start are read once it ends", self.pipeline.name, holder.thread,
                        holder.trx, holder.age, extra={"pipeline": self.pipeline.name})

    def _note_cursor_age(self, rows: pa.Table, name: str) -> None:
        values = rows.column(name)
        if len(values) and values[len(values) - 1].is_valid:
            last = values[len(values) - 1].as_py()
            if hasattr(last, "timestamp"):
                stamp = (last if last.tzinfo is not None else last.replace(tzinfo=UTC)).timestamp()
                self._cursor_age = max(0.0, time.time() - stamp)


def mysql_source(config: MysqlSourceConfig, pipeline: PipelineConfig, *, once: bool, max_rows: int,
                 unreachable_after: float) -> PollingSource:
    partition = (".".join(relation(pipeline.source_table, config.schema_name or ""))
                 if pipeline.source_table else "query")
    return PollingSource(MysqlReader(config, pipeline), partition, name=config.name, pipeline=pipeline.name,
                         once=once, max_rows=max_rows, poll_interval=config.poll_interval,
                         unreachable_after=unreachable_after, lease_ttl=config.lease_ttl,
                         key_scan=pipeline.deletes.key_scan, key_columns=pipeline.unique_key,
                         lag_seconds=pipeline.incremental.lag_seconds if pipeline.incremental else 0.0)
