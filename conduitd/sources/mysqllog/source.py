"""The log-based MySQL/MariaDB source (`type: mysql, mode: log`): the pipeline's table from the
server's ROW binary log (`reader`, on a thread), after an initial snapshot of the rows already
there (`snapshot`), handed over at the snapshot's own binlog coordinate.

One partition, the table (`schema.table`); its positions are described in `position`. The
position commits with the rows (the runtime stores the chunk's end with them): a restart reads the
binlog again from the committed coordinate and skips the changes of a partly handed-over
transaction (`done`). Nothing is written on the server: the binlog is the server's, kept by its
own `binlog_expire_logs_seconds`; a coordinate purged from it cannot be read again (`problem()`
says so, and the run fails with what to do).

`--once` reads up to where the binlog stood when the log phase began (`SHOW MASTER STATUS`).

Lag (`lag()`): `bytes` of binlog after the position read (`SHOW BINARY LOGS`), and `seconds`
since the commit of the last change read when there is more to read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from asyncmy.errors import MySQLError

from conduitd.config import PipelineConfig
from conduitd.core.records import Chunk, Position
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, TruncatedAtSource
from conduitd.sources.base import Checkpoints
from conduitd.sources.mysqllog import reader as rd
from conduitd.sources.mysqllog.position import Coordinate, bytes_behind, coordinate, log_position, snapshot_position
from conduitd.sources.mysqllog.rows import to_rows, with_op
from conduitd.sources.mysqllog.server import binary_logs, binlog_end, missing_settings, settings
from conduitd.sources.mysqllog.snapshot import begin_snapshot, read_blocks
from conduitd.sources.tables.catalog import SourceColumn, relation
from conduitd.sources.tables.cursor import Plan
from conduitd.sources.tables.mysql import connect
from conduitd.sources.tables.mysql_catalog import decode, quote
from conduitd.sources.tables.mysql_errors import LOST, code_of, message
from conduitd.sources.tables.mysql_plan import plan_for
from conduitd.sources.tables.mysql_settings import MysqlSourceConfig

log = logging.getLogger(__name__)
_PURGED = 1236
"""The server cannot send from the requested coordinate (purged, or not a binlog of it)."""
_PROGRESS_EVERY = 10.0
"""Seconds after which a position moved by other tables' transactions is handed over alone."""
_LAG_EVERY = 2.0
_LOST = (MySQLError, OSError)


def server_id_for(config: MysqlSourceConfig, pipeline: str) -> int:
    """The configured replica id, else one derived from the pipeline's name (in 2^30..2^31)."""
    return config.server_id or (1 << 30) + zlib.crc32(pipeline.encode()) % (1 << 30)


class MysqlLogSource:
    """See the module docstring; a `sources.base.Source`."""

    def __init__(self, config: MysqlSourceConfig, pipeline: PipelineConfig, *, once: bool, max_rows: int,
                 deletes: bool, unreachable_after: float) -> None:
        if pipeline.source_table is None:
            raise ConfigError(f"pipeline {pipeline.name!r}: mode log reads a `source_table`, not a query")
        if pipeline.incremental is not None:
            raise ConfigError(f"pipeline {pipeline.name!r}: mode log reads every change: remove `incremental`")
        try:
            import pymysqlreplication  # noqa: F401 - the binlog reader, imported on its thread
        except ImportError:
            raise ConfigError(f"pipeline {pipeline.name!r}: mode log reads the binlog with mysql-replication: "
                              "pip install 'conduitd[mysql]'") from None
        self.config, self.pipeline = config, pipeline
        self.schema, self.table = relation(pipeline.source_table, config.schema_name or "")
        self.partition = f"{self.schema}.{self.table}"
        self.once, self.max_rows, self.unreachable_after = once, max_rows, unreachable_after
        self.deletes = deletes
        """Whether deletes are handed over (upsert mode); otherwise they are left out (or, with an
        `op_column`, appended as rows)."""
        self.op_column = config.op_column
        self.deletes_as_rows = self.op_column is not None and pipeline.mode == "append"
        """Append mode with an `op_column`: deletes are appended as rows (their key), not left out."""
        self._handed: Position = None
        """The end of the last chunk this run handed over."""
        self._acknowledged: Position = None
        self._acknowledging = asyncio.Event()
        self._columns: dict[str, SourceColumn] = {}
        self._key: list[str] = []
        self._reader: rd.BinlogReader | None = None
        self._lag: dict[str, float] = {}
        self._problem: str | None = None
        self._last_commit = 0.0
        self._lag_at = 0.0

    @property
    def epoch(self) -> int:
        return 0

    def lag(self) -> dict[str, dict[str, float]]:
        return {self.partition: dict(self._lag)} if self._lag else {}

    def problem(self) -> str | None:
        return self._problem

    async def resync(self) -> bool:
        return False

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        # Nothing to release on the server (the position lives with the rows): only noted, so a
        # TRUNCATE can wait for what came before it.
        if self.partition in positions:
            self._acknowledged = positions[self.partition]
            self._acknowledging.set()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    # -- the catalog ---------------------------------------------------------------------------

    async def _plan(self, conn: Any) -> Plan:
        plan = await plan_for(conn, self.config, self.pipeline)
        for col in plan.columns:
            self._columns[col.name] = col  # the latest type; a dropped column stays known
        self._key = [c.name for c in plan.key]
        if self.op_column is not None and self.op_column in self._columns:
            raise ConfigError(f"pipeline {self.pipeline.name!r}: op_column {self.op_column!r} is a column of "
                              f"{self.partition}: name the operation column something else")
        return plan

    async def _refresh(self) -> None:
        conn = await connect(self.config)
        try:
            await self._plan(conn)
        finally:
            conn.close()

    # -- the run ---------------------------------------------------------------------------------

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        position: dict[str, Any] | None = (await checkpoints.committed()).get(self.partition)
        await self._check_server()
        failing_since: float | None = None
        while position is None or position.get("phase") == "snapshot":
            try:
                async for chunk in self._snapshot(position):
                    self._handed = chunk.end
                    yield chunk
                    position, failing_since = chunk.end, None
                    if stop.is_set():
                        return
            except (DependencyUnreachable, *_LOST) as exc:
                self._problem = f"reading the snapshot of {self.partition}: {message(exc)}"
                log.warning("pipeline %s: %s; resuming", self.pipeline.name, self._problem,
                            extra={"pipeline": self.pipeline.name})
                failing_since = failing_since or time.monotonic()
                if self.once and time.monotonic() - failing_since > self.unreachable_after:
                    raise DependencyUnreachable(self._problem) from None
                await asyncio.sleep(0.5)
        self._problem = None
        async for chunk in self._log(position, stop):
            self._handed = chunk.end
            yield chunk

    async def _check_server(self) -> None:
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                conn = await connect(self.config)
                break
            except DependencyUnreachable as exc:
                self._problem = str(exc)
                if self.once and time.monotonic() - started > self.unreachable_after:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        try:
            wrong = missing_settings(await settings(conn))
            if wrong:
                raise ConfigError(f"pipeline {self.pipeline.name!r}: mode log: " + "; ".join(wrong))
            await self._plan(conn)
        finally:
            conn.close()

    async def _snapshot(self, start: dict[str, Any] | None) -> AsyncIterator[Chunk]:
        conn = await connect(self.config)
        try:
            at, gtid = await begin_snapshot(conn, lambda: connect(self.config),
                                            f"{quote(self.schema)}.{quote(self.table)}")
            after: list[str] | None = None
            if start is not None:  # resumed: the log still starts at the first snapshot's coordinate
                at, gtid, after = coordinate(start), start.get("gtid"), list(start["after"])
            plan = await self._plan(conn)
            begin: Position = start
            async for rows, last in read_blocks(conn, plan, after, self.max_rows):
                end = (snapshot_position(at, gtid, last or []) if len(rows) == self.max_rows
                       else log_position(at, gtid))
                table, rejects = decode(rows, plan.columns, self.partition, _at(begin))
                table = with_op(table, self.op_column, ["snapshot"] * table.num_rows)
                yield Chunk(self.partition, begin, end, table, tuple(rejects))
                begin = end
        finally:
            conn.close()

    def _target(self, start: Coordinate, until: Coordinate | None) -> rd.Target:
        params = self.config.connect_params
        connection = {"host": params.host, "port": params.port, "user": params.user or "",
                      "password": params.password or "", "connect_timeout": int(self.config.connect_timeout)}
        return rd.Target(connection, server_id_for(self.config, self.pipeline.name), start, self.schema, self.table,
                         tuple(self._key), until, heartbeat=min(1.0, float(self.config.poll_interval)))

    async def _until(self) -> Coordinate | None:
        if not self.once:
            return None
        conn = await connect(self.config)
        try:
            return await binlog_end(conn)
        finally:
            conn.close()

    async def _log(self, begin: dict[str, Any], stop: asyncio.Event) -> AsyncIterator[Chunk]:
        until = await self._until()
        if until is not None and until < coordinate(begin):
            name = self.pipeline.name
            raise ConduitError(f"pipeline {name!r}: the committed binlog position {coordinate(begin)} is past the "
                               f"server's binlog end {until} (RESET MASTER, or another server?): reset the checkpoint "
                               f"(`conduitd checkpoints reset -p {name}`) to read a new snapshot")
        delay, failing_since = 0.5, None
        while not stop.is_set():
            self._reader = rd.BinlogReader(self._target(coordinate(begin), until), asyncio.get_running_loop())
            self._reader.start()
            try:
                async for chunk in self._follow(self._reader, begin, stop):
                    if failing_since is not None:  # read again: the failure is over
                        self._problem = None
                    yield chunk
                    begin, failing_since, delay = chunk.end, None, 0.5
                return
            except _ReadFailed as exc:
                self._problem = exc.reason
                log.warning("pipeline %s: %s; reading again from %s", self.pipeline.name, exc.reason,
                            coordinate(begin), extra={"pipeline": self.pipeline.name})
                failing_since = failing_since or time.monotonic()
                if self.once and time.monotonic() - failing_since > self.unreachable_after:
                    raise DependencyUnreachable(exc.reason) from None
            finally:
                await self.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _follow(self, reader: rd.BinlogReader, begin: dict[str, Any],
                      stop: asyncio.Event) -> AsyncIterator[Chunk]:
        """Chunks from one reader until --once's end, `stop`, or a failure (`_ReadFailed`)."""
        first, skip = coordinate(begin), int(begin.get("done", 0))
        gtid: str | None = begin.get("gtid")
        position, changes = begin, list[rd.Row]()
        txn: Coordinate | None = None
        index, yielded = 0, time.monotonic()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                getting = asyncio.ensure_future(reader.queue.get())
                done, _ = await asyncio.wait({getting, stopping}, timeout=self.config.poll_interval,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getting not in done:
                    getting.cancel()
                    if stopping in done:
                        return
                    await self._note_lag(position)
                    continue
                for item in getting.result():
                    if isinstance(item, rd.Failed):
                        raise _ReadFailed(self._failure(item.error, position))
                    if isinstance(item, rd.Row):
                        if item.start != txn:
                            txn, index = item.start, 0
                        index += 1
                        if (item.start == first and index <= skip) or (
                                item.delete and not self.deletes and not self.deletes_as_rows):
                            continue  # handed over before the restart; a delete append mode ignores
                        changes.append(item)
                        self._last_commit = float(item.timestamp)
                        position = log_position(item.start, gtid, done=index)
                    elif isinstance(item, rd.Commit):
                        txn, gtid = None, item.gtid or gtid
                        position = log_position(item.at, gtid)
                    elif isinstance(item, rd.Schema):
                        if changes:  # the rows before keep the shape they had
                            yield self._chunk(begin, position, changes)
                            begin, changes, yielded = position, [], time.monotonic()
                        await self._refresh()
                        log.info("pipeline %s: %s changed (%s): columns now %s", self.pipeline.name,
                                 self.partition, item.query[:120], ", ".join(self._columns),
                                 extra={"pipeline": self.pipeline.name})
                    elif isinstance(item, rd.Truncated):
                        if changes:
                            yield self._chunk(begin, position, changes)
                            begin, changes = position, []
                        await self._committed(stop)  # what came before it is written first
                        raise TruncatedAtSource(
                            f"pipeline {self.pipeline.name!r}: {self.partition} was truncated at the source "
                            f"({item.query[:80]!r} after {coordinate(position)}); a TRUNCATE carries no keys, so the "
                            "destination cannot follow it. Everything before it is written. To go on, empty the "
                            f"destination table {self.pipeline.table_name!r} and run `conduitd checkpoints reset -p "
                            f"{self.pipeline.name}`: the next run reads the table again from a new snapshot")
                    elif isinstance(item, rd.Idle):
                        if txn is None:
                            position = log_position(item.at, gtid)
                    elif isinstance(item, rd.Reached):
                        if changes or position != begin:
                            yield self._chunk(begin, position, changes)
                        return
                    if len(changes) >= self.max_rows:
                        yield self._chunk(begin, position, changes)
                        begin, changes, yielded = position, [], time.monotonic()
                quiet = reader.queue.empty()
                if changes and quiet and txn is None:  # whole transactions when it can
                    yield self._chunk(begin, position, changes)
                    begin, changes, yielded = position, [], time.monotonic()
                elif quiet and position != begin and time.monotonic() - yielded > _PROGRESS_EVERY:
                    yield self._chunk(begin, position, [])  # other tables' transactions: move on
                    begin, yielded = position, time.monotonic()
                await self._note_lag(position)
                if stop.is_set():
                    return
        finally:
            stopping.cancel()

    async def _committed(self, stop: asyncio.Event) -> None:
        """Return once the last chunk this run handed over is acknowledged, or on `stop`."""
        while self._handed is not None and self._acknowledged != self._handed and not stop.is_set():
            self._acknowledging.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acknowledging.wait(), 1.0)

    def _chunk(self, begin: dict[str, Any], end: dict[str, Any], changes: list[rd.Row]) -> Chunk:
        read = to_rows(changes, list(self._columns.values()), self.partition, begin, op_column=self.op_column,
                       deletes_as_rows=self.deletes_as_rows)
        return Chunk(self.partition, begin, end, read.table, read.rejects, deletes=read.deletes)

    def _failure(self, error: BaseException, position: dict[str, Any]) -> str:
        at = coordinate(position)
        if code_of(error) == _PURGED:
            reason = (f"pipeline {self.pipeline.name!r}: the binlog at {at} is no longer on the server "
                      f"({message(error)}): the changes since the committed position are lost; read the table "
                      f"again from a new snapshot: `conduitd checkpoints reset -p {self.pipeline.name}` (upsert "
                      "mode keeps the destination's rows) and raise binlog_expire_logs_seconds")
            self._problem = reason
            raise ConduitError(reason)
        if code_of(error) in LOST or isinstance(error, OSError):
            return f"reading the binlog at {at}: {message(error)}"
        raise ConduitError(f"pipeline {self.pipeline.name!r}: reading the binlog at {at}: "
                           f"{type(error).__name__}: {message(error)}")

    async def _note_lag(self, position: dict[str, Any]) -> None:
        if time.monotonic() - self._lag_at < _LAG_EVERY:
            return
        self._lag_at = time.monotonic()
        try:
            conn = await connect(self.config)
            try:
                logs = await binary_logs(conn)
            finally:
                conn.close()
        except (DependencyUnreachable, *_LOST) as exc:
            self._problem = f"reading where the binlog stands: {message(exc)}"
            return
        behind = bytes_behind(coordinate(position), logs)
        if behind is None:
            self._problem = (f"the binlog file {position['file']} is no longer on the server (purged): "
                             "the next read from it fails")
            return
        seconds = max(0.0, time.time() - self._last_commit) if behind and self._last_commit else 0.0
        self._lag = {"bytes": float(behind), "seconds": seconds}
        if self._problem and self._problem.startswith("reading where"):
            self._problem = None


def _at(position: Position) -> Callable[[int], Position]:
    return lambda _index: position


class _ReadFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
