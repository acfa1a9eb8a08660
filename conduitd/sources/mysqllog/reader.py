"""The binlog read on a thread of its own: `mysql-replication`'s `BinLogStreamReader` in blocking
mode (its non-blocking mode re-reads from the start after a dropped read), from a coordinate, for
one table, handing what it reads to the event loop as plain items through a bounded queue (so a
slow destination holds the reader back, and the event loop never waits on the socket).

Items, in binlog order:

    Row      one change of the table: its values as server text (`values`), delete or not, the
             coordinate where its transaction starts and the transaction's commit time;
    Commit   a transaction (or a standalone statement) ended at `at`: every change before is read;
    Schema   a DDL statement naming the table (its columns may have changed);
    Truncated  a TRUNCATE of the table;
    Idle     nothing more to read for now (a heartbeat), everything up to `at` read;
    Reached  `--once`: the coordinate captured at the start is reached, the reader ended;
    Failed   the reader stopped on an error (the source decides: retry, or a purged binlog).

The server sends a heartbeat every `heartbeat` seconds when idle: the thread sees the stop flag
then at the latest, and closes its stream itself (closing a socket another thread reads from
would make the library reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from conduitd.sources.mysqllog.position import Coordinate
from conduitd.sources.mysqllog.values import row_texts


@dataclass(frozen=True, slots=True)
class Row:
    values: dict[str, str | bytes | None]
    delete: bool
    problem: str
    start: Coordinate
    timestamp: int
    op: str = "insert"
    """What made the row: `insert`, `update` or `delete` (the old key of an update that changed it)."""


@dataclass(frozen=True, slots=True)
class Commit:
    at: Coordinate
    gtid: str | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class Schema:
    query: str


@dataclass(frozen=True, slots=True)
class Truncated:
    """A TRUNCATE of the table: it carries no keys, so the source cannot follow it."""

    query: str


@dataclass(frozen=True, slots=True)
class Idle:
    at: Coordinate


@dataclass(frozen=True, slots=True)
class Reached:
    at: Coordinate


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Item = Row | Commit | Schema | Truncated | Idle | Reached | Failed


@dataclass
class Target:
    """What the reader reads: the connection, where from, which table, until where."""

    connection: dict[str, Any] = field(repr=False)
    server_id: int
    start: Coordinate
    schema: str
    table: str
    key: Sequence[str]
    until: Coordinate | None = None
    heartbeat: float = 1.0


def _names(query: str, schema: str, table: str) -> bool:
    """Whether a statement may concern the table (DDL naming it, quoted or not)."""
    words = {w.lower() for w in re.findall(r"[A-Za-z0-9_$]+", query.replace("`", " "))}
    return table.lower() in words


def _connect(**settings: Any) -> Any:
    """pymysql.connect with the names pymysql 1.1 wants (the library still passes `db`, which warns)."""
    import pymysql

    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return pymysql.connect(**settings)


class BinlogReader:
    """One read of the binlog on its own thread; `start()` then `items()`; `stop()` ends it."""

    def __init__(self, target: Target, loop: asyncio.AbstractEventLoop, depth: int = 64) -> None:
        self.target = target
        self.queue: asyncio.Queue[list[Item]] = asyncio.Queue(depth)
        self._loop = loop
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"binlog {target.schema}.{target.table}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        while not self.queue.empty():  # a thread waiting for room sees the flag
            self.queue.get_nowait()
        await asyncio.to_thread(self._thread.join, 3 * self.target.heartbeat + 5)

    def _put(self, items: list[Item]) -> bool:
        """Hand items to the event loop, waiting for room; False when stopping."""
        future = asyncio.run_coroutine_threadsafe(self.queue.put(items), self._loop)
        while True:
            try:
                future.result(timeout=0.2)
                return True
            except FutureTimeout:
                if self._stopping.is_set():
                    future.cancel()
                    return False

    def _run(self) -> None:
        t = self.target
        if t.until is not None and t.until <= t.start:
            self._put([Reached(t.start)])
            return
        stream = None
        try:
            from pymysqlreplication import BinLogStreamReader

            stream = BinLogStreamReader(
                connection_settings=t.connection, server_id=t.server_id, blocking=True, resume_stream=True,
                log_file=t.start.file, log_pos=t.start.pos, only_schemas=[t.schema], only_tables=[t.table],
                slave_heartbeat=t.heartbeat, enable_logging=False, pymysql_wrapper=_connect)
            self._follow(stream)
        except Exception as exc:  # noqa: BLE001 - handed to the source, which decides
            if not self._stopping.is_set():
                self._put([Failed(exc)])
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def _follow(self, stream: Any) -> None:
        from pymysqlreplication import event as ev
        from pymysqlreplication import row_event as rows

        t = self.target
        file, boundary = t.start.file, t.start
        txn_start: Coordinate | None = None
        begun = False
        gtid: str | None = None
        while not self._stopping.is_set():
            event = stream.fetchone()
            if event is None:
                continue
            out: list[Item] = []
            log_pos = int(getattr(event.packet, "log_pos", 0) or 0)
            if isinstance(event, ev.RotateEvent):
                file = event.next_binlog
                if txn_start is None:
                    boundary = Coordinate(file, int(event.position))
            elif isinstance(event, ev.MariadbGtidEvent | ev.GtidEvent):
                txn_start, begun, gtid = boundary, False, str(event.gtid)
            elif isinstance(event, ev.QueryEvent):
                query = event.query.strip() if isinstance(event.query, str) else ""
                word = query.split(None, 1)[0].upper() if query else ""
                if word == "BEGIN":
                    txn_start, begun = txn_start or boundary, True
                elif word in ("COMMIT", "ROLLBACK") or not begun:
                    if word not in ("COMMIT", "ROLLBACK", "BEGIN", "SAVEPOINT") and _names(query, t.schema, t.table):
                        out.append(Truncated(query) if word == "TRUNCATE" else Schema(query))
                    boundary, txn_start = Coordinate(file, log_pos), None
                    out.append(Commit(boundary, gtid, int(event.timestamp)))
            elif isinstance(event, rows.RowsEvent):
                if event.schema == t.schema and event.table == t.table:
                    out.extend(self._changes(event, txn_start or boundary))
            elif isinstance(event, ev.XidEvent):
                boundary, txn_start = Coordinate(file, log_pos), None
                out.append(Commit(boundary, gtid, int(event.timestamp)))
            elif isinstance(event, ev.HeartbeatLogEvent):
                if txn_start is None:
                    if event.ident == file and log_pos > boundary.pos:
                        boundary = Coordinate(file, log_pos)
                    out.append(Idle(boundary))
            elif txn_start is None and log_pos > 0:
                boundary = Coordinate(file, log_pos)
            if txn_start is None and t.until is not None and t.until <= boundary:
                out.append(Reached(boundary))
            if out and not self._put(out):
                return
            if out and isinstance(out[-1], Reached):
                return

    def _changes(self, event: Any, start: Coordinate) -> list[Item]:
        """A rows event's changes; a delete keeps only the key (its other values matter to no one
        and a value the library cannot decode must not hold the delete back)."""
        from pymysqlreplication import row_event as rows

        columns = list(event.columns)
        key = self.target.key
        found: list[Item] = []
        stamp = int(event.timestamp)

        def keyed(values: dict[str, Any]) -> dict[str, Any]:
            return {k: values[k] for k in key if k in values} if key else values

        for row in event.rows:
            if isinstance(event, rows.UpdateRowsEvent):
                old = keyed(row["before_values"])
                after, problem = row_texts(row["after_values"], row.get("after_none_sources", {}), columns)
                gone, gone_problem = row_texts(old, row.get("before_none_sources", {}), columns)
                if any(gone.get(k) != after.get(k) for k in key):
                    found.append(Row(gone, True, gone_problem, start, stamp, "delete"))  # the old key goes
                found.append(Row(after, False, problem, start, stamp, "update"))
            elif isinstance(event, rows.DeleteRowsEvent):
                values, problem = row_texts(keyed(row["values"]), row.get("none_sources", {}), columns)
                found.append(Row(values, True, problem, start, stamp, "delete"))
            else:
                values, problem = row_texts(row["values"], row.get("none_sources", {}), columns)
                found.append(Row(values, False, problem, start, stamp))
        return found
