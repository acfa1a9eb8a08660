"""The PostgreSQL table source (`type: postgres`): a pipeline's `source_table` or `query`, read by
polling with a keyset cursor (`cursor`), bounded against late commits (`watermark`), fetched in
bulk with `COPY (SELECT ...) TO STDOUT` and parsed into Arrow with the catalog's types (`decode`).

A partition is the relation (`schema.table`, or `query`). The session is read only, in UTC, with
ISO dates. A lost connection is retried with backoff (readiness red, `problem` says why); under
--once, for `unreachable_after` seconds, then the run ends with exit code 5."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pyarrow as pa

from conduitd.config import IncrementalConfig, PipelineConfig
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable
from conduitd.sources.tables.catalog import COLUMNS_SQL, PRIMARY_KEY_SQL, SourceColumn, quote, relation
from conduitd.sources.tables.cursor import Plan, resumes, window_of
from conduitd.sources.tables.decode import decode_copy, last_texts
from conduitd.sources.tables.poller import PollingSource, Read
from conduitd.sources.tables.postgres_keys import present_keys
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig
from conduitd.sources.tables.postgres_sql import hidden_columns, position_names, select_sql
from conduitd.sources.tables.watermark import Holder, SequenceWatermark, parse_snapshot, timestamp_bound

log = logging.getLogger(__name__)

_LOST = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.InternalClientError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
         asyncpg.CrashShutdownError)
_SHORT_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real",
                "float8": "double precision", "bool": "boolean", "timestamptz": "timestamp with time zone",
                "timestamp": "timestamp without time zone", "varchar": "character varying", "bpchar": "character"}
_HELD_WARNING = 60.0
"""Seconds a running write transaction may hold the bound back before it is logged."""


async def connect(config: PostgresSourceConfig) -> asyncpg.Connection:
    params = config.connect_params
    try:
        return await asyncpg.connect(
            **params.connect_kwargs(), timeout=params.connect_timeout or config.connect_timeout,
            server_settings={"application_name": "conduitd source", "TimeZone": "UTC", "DateStyle": "ISO, YMD",
                             "IntervalStyle": "iso_8601", "extra_float_digits": "1",
                             "default_transaction_read_only": "on"})
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigError(f"source {config.name!r}: PostgreSQL at {params.where()} refused the login: {exc}") from None
    except asyncpg.InvalidPasswordError:
        raise ConfigError(f"source {config.name!r}: PostgreSQL at {params.where()} refused the password "
                          f"of user {params.user!r}") from None
    except (*_LOST, ValueError, asyncpg.PostgresError) as exc:
        raise DependencyUnreachable(f"source {config.name!r}: cannot connect to PostgreSQL at {params.where()}: "
                                    f"{str(exc) or type(exc).__name__}") from None


async def plan_for(conn: asyncpg.Connection, config: PostgresSourceConfig, pipeline: PipelineConfig) -> Plan:
    """What `pipeline` reads from this database: its columns, key and cursor, checked."""
    where = f"pipeline {pipeline.name!r}"
    if pipeline.source_table is not None:
        schema, table = relation(pipeline.source_table, config.db_schema)
        name = f"{quote(schema)}.{quote(table)}"
        try:
            rows = await conn.fetch(COLUMNS_SQL, name)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            raise ConfigError(f"{where}: source table {schema}.{table} does not exist") from None
        columns = [SourceColumn(r[0], r[1], r[2]) for r in rows]
        key_names = [r[0] for r in await conn.fetch(PRIMARY_KEY_SQL, name)] or list(pipeline.unique_key)
        source = name
    elif pipeline.query is not None:
        query = pipeline.query.strip().rstrip(";").strip()
        source = f"({query})"
        try:
            async with conn.transaction(readonly=True):  # outside one, asyncpg leaves the next BEGIN refused
                statement = await conn.prepare(f"SELECT * FROM {source} AS conduitd_src LIMIT 0")
        except asyncpg.PostgresError as exc:
            raise ConfigError(f"{where}: the query cannot run: {exc}") from None
        columns = [SourceColumn(a.name, _SHORT_NAMES.get(a.type.name, a.type.name),
                                "A" if a.type.kind == "array" else "") for a in statement.get_attributes()]
        key_names = list(pipeline.unique_key)
    else:
        raise ConfigError(f"{where}: a database source needs 'source_table' or 'query'")
    by_name = {c.name: c for c in columns}
    if len(by_name) != len(columns):
        raise ConfigError(f"{where}: the source has two columns of one name")
    if not key_names:
        raise ConfigError(f"{where}: the source has no primary key: set 'unique_key' to the columns that "
                          "identify a row (they order the reads)")
    missing = [k for k in key_names if k not in by_name]
    if missing:
        raise ConfigError(f"{where}: key column(s) {', '.join(map(repr, missing))} are not in the source")
    incremental = pipeline.incremental
    cursor = strategy = None
    initial = None
    if incremental is not None:
        if incremental.column not in by_name:
            raise ConfigError(f"{where}: incremental column {incremental.column!r} is not in the source "
                              f"(columns: {', '.join(by_name)})")
        cursor = by_name[incremental.column]
        strategy = _strategy(incremental, cursor, where)
        initial = None if incremental.initial_value is None else str(incremental.initial_value)
    key = [by_name[k] for k in key_names if cursor is None or k != cursor.name] or [by_name[key_names[0]]]
    return Plan(source, columns, key, cursor, strategy, initial)


def _strategy(incremental: IncrementalConfig, cursor: SourceColumn, where: str) -> str:
    sql = cursor.sql_type
    chosen = incremental.strategy
    if chosen is None:
        if sql.startswith("timestamp"):
            return "timestamp"
        if sql in ("smallint", "integer", "bigint"):
            return "sequential"
        if sql == "xid8":
            return "xid"
        raise ConfigError(f"{where}: incremental column {cursor.name!r} is {sql}: set incremental.strategy "
                          "(cursor, for any growing column without a guard against late commits)")
    if chosen == "timestamp" and not sql.startswith("timestamp"):
        raise ConfigError(f"{where}: strategy timestamp needs a timestamp column; {cursor.name!r} is {sql}")
    if chosen == "xid" and sql != "xid8":
        raise ConfigError(f"{where}: strategy xid needs the xid8 column `conduitd cdc setup` adds; {cursor.name!r} "
                          f"is {sql}")
    if chosen == "sequential" and sql not in ("smallint", "integer", "bigint", "numeric"):
        raise ConfigError(f"{where}: strategy sequential needs an integer column; {cursor.name!r} is {sql}")
    return chosen


@dataclass(frozen=True)
class _Copied:
    """One keyset COPY: its CSV, how many rows it has, the position texts of its last row."""

    data: bytes
    count: int
    last: list[str] | None


@dataclass(frozen=True)
class _Ahead:
    """A copy read ahead: what it reads (plan, limit, from where) and the task reading it."""

    plan: Plan
    limit: int
    after: tuple[Any, ...]
    task: asyncio.Task[_Copied | None]


async def _drop(task: asyncio.Task[_Copied | None]) -> None:
    """Cancel a read ahead and wait for it, its outcome unseen (a lost connection shows on the next
    read); asyncpg cancels the COPY on the server and leaves the connection usable."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class PostgresReader:
    """The PostgreSQL side of a polling source (`poller.TableReader`)."""

    errors: tuple[type[BaseException], ...] = (*_LOST, asyncpg.PostgresError)
    read_ahead = True
    """Copy the next chunk after a full one while the caller decodes and writes this one."""

    def __init__(self, config: PostgresSourceConfig, pipeline: PipelineConfig) -> None:
        self.config = config
        self.pipeline = pipeline
        self.where = f"PostgreSQL at {config.connect_params.where()}"
        self._conn: asyncpg.Connection | None = None
        self._holder = Holder()
        self._warned_holder: int | None = None
        self._sequence = SequenceWatermark()
        self._lookback = pipeline.incremental.lookback_seconds if pipeline.incremental else 0.0
        self._cursor_age: float | None = None
        self._ahead: _Ahead | None = None

    async def connect(self) -> None:
        await self.close()
        self._conn = await connect(self.config)

    async def close(self) -> None:
        await self._drop_ahead()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise asyncpg.InterfaceError("not connected")
        return self._conn

    async def plan(self) -> Plan:
        return await plan_for(self.conn, self.config, self.pipeline)

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, _LOST)

    def failure(self, exc: BaseException) -> ConduitError:
        state = getattr(exc, "sqlstate", "")
        return ConduitError(f"source {self.config.name!r}, pipeline {self.pipeline.name!r}: PostgreSQL {state}: {exc}")

    async def present_keys(self, plan: Plan, names: Sequence[str], keys: Sequence[Sequence[str]]) -> set[int]:
        await self._drop_ahead()  # the connection is the key scan's now
        return await present_keys(self.conn, plan, names, keys)

    def lag(self) -> dict[str, float]:
        units: dict[str, float] = {}
        if self._cursor_age is not None:
            units["seconds"] = self._cursor_age
        units["watermark_held_seconds"] = self._holder.age if self._holder.pid is not None else 0.0
        if self._holder.pid is not None:
            units["watermark_holder_pid"] = float(self._holder.pid)  # the session to look at (pg_stat_activity)
        return units

    async def read(self, plan: Plan, after: dict[str, Any] | None, limit: int, partition: str) -> Read | None:
        ahead = await self._take_ahead(plan, after, limit)
        copied = await (ahead if ahead is not None else self._copy(self.conn, plan, after, limit))
        if copied is None:
            return None
        if self.read_ahead and copied.count >= limit and copied.last is not None and window_of(after) is None:
            self._read_ahead(plan, plan.position_after(copied.last, after), limit)
        columns = {c.name: c.arrow for c in plan.columns}
        hidden = [name for _, name in hidden_columns(plan)]
        logical = {c.name: c.logical for c in plan.columns if c.logical}
        read = await asyncio.to_thread(decode_copy, copied.data, columns, hidden, position_names(plan), partition,
                                       lambda texts: plan.position_after(texts, after), logical)
        if plan.cursor is not None and plan.strategy == "timestamp":
            self._note_cursor_age(read.rows, plan.cursor.name)
        return read

    def _read_ahead(self, plan: Plan, after: dict[str, Any], limit: int) -> None:
        """Copy the chunk after a full one while it is decoded and passed on: the next `read` from
        that position takes it (its own snapshot and bound, as if read then)."""
        task = asyncio.create_task(self._copy(self.conn, plan, after, limit), name=f"read ahead {self.pipeline.name}")
        self._ahead = _Ahead(plan, limit, resumes(after), task)

    async def _take_ahead(self, plan: Plan, after: dict[str, Any] | None,
                          limit: int) -> asyncio.Task[_Copied | None] | None:
        """The copy read ahead from `after`, if there is one; any other is dropped (a resync, a
        moved lease), and the connection is free again."""
        ahead = self._ahead
        if ahead is not None and ahead.plan is plan and ahead.limit == limit and ahead.after == resumes(after):
            self._ahead = None
            return ahead.task
        await self._drop_ahead()
        return None

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await _drop(ahead.task)

    async def _copy(self, conn: asyncpg.Connection, plan: Plan, after: dict[str, Any] | None,
                    limit: int) -> _Copied | None:
        """One keyset COPY in a snapshot of its own, below the bound taken in it; None when the
        bound allows nothing yet."""
        # A timestamp bound is read before the snapshot is taken: a transaction that commits
        # between the two is then in the snapshot (read inside it, it could be in neither).
        early = await self._bound(conn, plan) if plan.strategy == "timestamp" else None
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            bound = early if plan.strategy == "timestamp" else await self._bound(conn, plan)
            if plan.cursor is not None and plan.strategy == "sequential" and bound is None:
                return None  # every value seen may still be joined by a running transaction's
            sql, args = select_sql(plan, after, bound, limit)
            buffer = bytearray()

            async def collect(data: bytes) -> None:
                buffer.extend(data)

            status = await conn.copy_from_query(sql, *args, output=collect, format="csv")
        data = bytes(buffer)
        names = [c.name for c in plan.columns] + [name for _, name in hidden_columns(plan)]
        return _Copied(data, int(status.rsplit(" ", 1)[-1]), last_texts(data, names, position_names(plan)))

    async def _bound(self, conn: asyncpg.Connection, plan: Plan) -> str | None:
        if plan.cursor is None or plan.strategy == "cursor":
            return None
        if plan.strategy == "timestamp":
            bound, self._holder = await timestamp_bound(conn, self._lookback)
            self._warn_about_holder()
            return bound
        if plan.strategy == "xid":  # exact: every transaction below the snapshot's xmin has ended
            xmin_text: str = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            return xmin_text
        xmin, running = parse_snapshot(await conn.fetchval("SELECT pg_current_snapshot()::text"))
        largest = await conn.fetchval(f"SELECT max(conduitd_src.{quote(plan.cursor.name)})::text "
                                      f"FROM {plan.source} AS conduitd_src")
        return self._sequence.observe(largest, xmin, running)

    def _warn_about_holder(self) -> None:
        holder = self._holder
        if holder.pid is not None and holder.age > _HELD_WARNING and self._warned_holder != holder.pid:
            self._warned_holder = holder.pid
            log.warning("pipeline %s: the transaction of PostgreSQL session %s (xid %s), open for %.0f s, holds the "
                        "read back: rows after its start are read once it ends", self.pipeline.name, holder.pid,
                        holder.xid, holder.age, extra={"pipeline": self.pipeline.name})

    def _note_cursor_age(self, rows: pa.Table, column: str) -> None:
        values = rows.column(column)
        if len(values) and values[len(values) - 1].is_valid:
            last = values[len(values) - 1].as_py()
            if hasattr(last, "timestamp"):
                self._cursor_age = max(0.0, time.time() - last.timestamp())


def postgres_source(config: PostgresSourceConfig, pipeline: PipelineConfig, *, once: bool, max_rows: int,
                    unreachable_after: float) -> PollingSource:
    partition = ".".join(relation(pipeline.source_table, config.db_schema)) if pipeline.source_table else "query"
    return PollingSource(PostgresReader(config, pipeline), partition, name=config.name, pipeline=pipeline.name,
                         once=once, max_rows=max_rows, poll_interval=config.poll_interval,
                         unreachable_after=unreachable_after, lease_ttl=config.lease_ttl,
                         key_scan=pipeline.deletes.key_scan, key_columns=pipeline.unique_key,
                         lag_seconds=pipeline.incremental.lag_seconds if pipeline.incremental else 0.0)
