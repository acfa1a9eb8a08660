"""SQLite, the embedded default destination (stdlib `sqlite3`, run off the event loop).

One connection lives on one worker thread (sqlite3 objects are thread-bound). Rows, DLQ rows and
checkpoints commit in one transaction; WAL journaling keeps a killed process from losing or
half-writing a committed batch. Types: integers INTEGER, floats REAL, binary BLOB, everything
else TEXT (timestamps as ISO-8601 text, decimals as exact text, nested values as JSON).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import string
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from conduitd.config import ResourceConfig, SqliteDestinationConfig
from conduitd.core.prepare import Prepared, prepare
from conduitd.core.records import Batch, Position, Reject, SchemaChange, position_text
from conduitd.core.schema import Column, create_table_sql
from conduitd.destinations.base import CheckpointRow, CommitResult, DlqEntry, DlqFilter, RowsRefused
from conduitd.destinations.sqlite_errors import translate
from conduitd.dlq_sinks import DlqSink
from conduitd.runtime.commit import commit_prepared

T = TypeVar("T")
CHECKPOINTS = "conduitd_checkpoints"
HISTORY = "conduitd_schema_history"


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded quotes are doubled, so nothing can escape it."""
    return '"' + identifier.replace('"', '""') + '"'


def _on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class SqliteDestination:
    """See the module docstring."""

    def __init__(self, config: SqliteDestinationConfig) -> None:
        self.config = config
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self.dialect = SqliteDialect()
        self._removed_warned: dict[str, set[str]] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the connection's thread; every sqlite3 error is translated here, the one
        place all SQLite work passes (see `sqlite_errors`)."""
        if self._executor is None:
            raise RuntimeError("the SQLite destination is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.IntegrityError, sqlite3.DataError):
            raise  # refused values: the writer isolates the rows
        except sqlite3.Error as exc:
            raise translate(exc, self.config.path) from None

    async def open(self, *, read_only: bool = False) -> None:
        if self._executor is not None:
            raise RuntimeError("the SQLite destination is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conduitd-sqlite")
        try:
            await self._run(self._connect_read_only if read_only else self._connect)
        except BaseException:
            await self.close()
            raise

    def _connect_read_only(self) -> None:
        # A database that does not exist yet is empty: look at an empty one rather than create it.
        path = self.config.path
        if path in ("", ":memory:") or not os.path.exists(path):
            target = ":memory:"
        else:
            # On a read-only file system nothing can change the file, and SQLite could not
            # create the -shm file a WAL database is read through: it may read it as immutable
            # (unless a -wal file holds commits not yet in the database: immutable skips those).
            wal = f"{path}-wal"
            settled = not os.path.exists(wal) or os.path.getsize(wal) == 0
            immutable = "&immutable=1" if settled and _on_read_only_file_system(path) else ""
            target = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro{immutable}"
        self._conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False, timeout=30)

    def _connect(self) -> None:
        conn = sqlite3.connect(self.config.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (pipeline TEXT NOT NULL, partition TEXT NOT NULL, "
                "position TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (pipeline, partition))")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {HISTORY} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), pipeline TEXT NOT NULL, "
                "table_name TEXT NOT NULL, change TEXT NOT NULL, column_name TEXT, old_definition TEXT, "
                "new_definition TEXT, ddl TEXT, applied INTEGER NOT NULL)")
            # SQLite opens a file it cannot write read-only without a word, and the tables above
            # may exist already: a write that changes nothing, rolled back, finds out now rather
            # than at the first commit.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE 0")
            finally:
                conn.execute("ROLLBACK")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the SQLite destination is not open")
        return self._conn

    async def write_problems(self, resource: ResourceConfig) -> list[str]:
        return []  # a file: whether it can be written is checked with the run's other outputs

    async def ping(self) -> None:
        await self._run(self.conn.execute, "SELECT 1")

    async def setup(self, resource: ResourceConfig) -> None:
        if resource.dlq.type != "table":
            return  # the DLQ is a file or a topic
        await self._run(self.conn.execute,
                        f"CREATE TABLE IF NOT EXISTS {quote(resource.dlq_table)} ("
                        "id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, partition TEXT, "
                        "position TEXT, rule TEXT NOT NULL, reason TEXT NOT NULL, column_name TEXT, "
                        "value TEXT, payload TEXT, created_at TEXT NOT NULL DEFAULT (datetime('now')))")

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {row.partition: row.position for row in await self.list_checkpoints(pipeline)}

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        def query() -> list[CheckpointRow]:
            exists = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (CHECKPOINTS,)).fetchone()
            if not exists:
                return []
            sql = f"SELECT pipeline, partition, position, updated_at FROM {CHECKPOINTS}"
            rows = self.conn.execute(sql + " WHERE pipeline = ?", (pipeline,)) if pipeline else self.conn.execute(sql)
            return [CheckpointRow(p, part, orjson.loads(pos), datetime.fromisoformat(at)) for p, part, pos, at in rows]
        return await self._run(query)

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        def delete() -> int:
            if partition is None:
                cursor = self.conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE pipeline = ?", (pipeline,))
            else:
                cursor = self.conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE pipeline = ? AND partition = ?",
                                           (pipeline, partition))
            return cursor.rowcount
        return await self._run(delete)

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await _SqliteTransaction(self).table_columns(table)

    async def read_dlq(self, resource: ResourceConfig, where: DlqFilter) -> list[DlqEntry]:
        sql = (f"SELECT id, pipeline, partition, position, rule, reason, column_name, value, payload, created_at "
               f"FROM {quote(resource.dlq_table)} WHERE pipeline = ?")
        params: list[Any] = [resource.name]
        if where.rule:
            sql += " AND rule = ?"
            params.append(where.rule)
        if where.since:
            sql += " AND created_at >= ?"
            params.append(where.since.strftime("%Y-%m-%d %H:%M:%S"))
        if where.until:
            sql += " AND created_at < ?"
            params.append(where.until.strftime("%Y-%m-%d %H:%M:%S"))
        sql += " ORDER BY id" + (f" LIMIT {int(where.limit)}" if where.limit else "")

        def query() -> list[DlqEntry]:
            return [DlqEntry(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else None, *r[4:])
                    for r in self.conn.execute(sql, params)]
        return await self._run(query)

    async def prepare_batch(self, resource: ResourceConfig, batch: Batch) -> Prepared:
        # SQLite work shares one thread with the connection: prepared in the commit, against the
        # table as it is then.
        return Prepared(batch, live=None, known=False)

    async def commit_batch(self, resource: ResourceConfig, prepared: Prepared,
                           dlq: DlqSink | None = None) -> CommitResult:
        warned = self._removed_warned.setdefault(resource.table_name, set())

        async def again(live: dict[str, Column] | None) -> Prepared:
            return await asyncio.to_thread(prepare, self.dialect, resource, prepared.batch, live,
                                           removed_warned=warned)

        tx = _SqliteTransaction(self)
        await self._run(self.conn.execute, "BEGIN IMMEDIATE")
        try:
            result, _ = await commit_prepared(tx, resource, prepared, again, dlq)
            await self._run(self.conn.execute, "COMMIT")
            prepared.batch.timings.end("commit")
        except BaseException:
            await asyncio.shield(self._run(self._rollback))
            raise
        return result

    def _rollback(self) -> None:
        # Some errors (a full disk, an I/O error) roll the transaction back by themselves; a
        # ROLLBACK then would fail and hide the error that matters.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _column_limit() -> int:
    """SQLITE_MAX_COLUMN as this SQLite library was built (2,000 by default)."""
    probe = sqlite3.connect(":memory:")
    try:
        return int(probe.getlimit(sqlite3.SQLITE_LIMIT_COLUMN))
    finally:
        probe.close()


class SqliteDialect:
    """Types, DDL text and row encoding for SQLite (pure; safe in worker threads)."""

    max_identifier_bytes = None
    max_columns = _column_limit()

    def name_problem(self, name: str) -> str | None:
        # SQLite takes any other name, "" included; `rowid`, `oid` and `_rowid_` become ordinary
        # columns (they then hide the row id, which conduitd never reads).
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        if "\x00" in name:
            return f"column name {shown} contains a NUL character, which SQLite names cannot hold"
        try:
            name.encode()
        except UnicodeEncodeError:
            return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
        return None

    def name_key(self, name: str) -> str:
        return name.translate(_ASCII_LOWER)  # SQLite compares names ignoring ASCII case only

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        # SQLite's INTEGER is int64: a uint64 column (values up to 2**64-1) is kept as the exact
        # integer's text, since an integer-looking text in an INTEGER column would become a REAL.
        # SQLite has no boolean: `true`/`false` are kept as that text, as read (not 1/0).
        if pa.types.is_integer(arrow) and not pa.types.is_uint64(arrow):
            return Column(name, pa.int64(), "INTEGER")
        if pa.types.is_floating(arrow):
            return Column(name, pa.float64(), "REAL")
        if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
            return Column(name, pa.binary(), "BLOB")
        return Column(name, pa.string(), "TEXT", json=pa.types.is_nested(arrow))

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(quote(table), columns, key, quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return None  # SQLite keeps any value in any column: a wider value needs no DDL

    def widening_holds(self, old: Column, new: Column) -> bool:
        # Without DDL the column keeps its affinity: text such as "18446744073709551615" written
        # to an INTEGER or REAL column is converted to a (rounded) REAL. Numbers into numbers hold.
        return not (old.sql in ("INTEGER", "REAL") and new.sql == "TEXT")

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> list[tuple[Any, ...]]:
        return list(zip(*(rows.column(i).to_pylist() for i in range(rows.num_columns)), strict=True))


class _SqliteTransaction:
    """The commit steps in SQLite dialect; each runs on the connection's thread."""

    def __init__(self, destination: SqliteDestination) -> None:
        self.d = destination
        self.depth = 0

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return await self.d._run(self.d.conn.execute, sql, params)  # errors translated in `_run`

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        cursor = await self._exec(f"PRAGMA table_info({quote(table)})")
        rows = await self.d._run(cursor.fetchall)
        if not rows:
            return None
        columns = {}
        for _cid, name, declared, *_ in rows:
            kind = (declared or "").upper()
            if "INT" in kind:
                columns[name] = Column(name, pa.int64(), declared)
            elif any(k in kind for k in ("REAL", "FLOA", "DOUB")):
                columns[name] = Column(name, pa.float64(), declared)
            elif "BLOB" in kind:
                columns[name] = Column(name, pa.binary(), declared)
            else:
                columns[name] = Column(name, pa.string(), declared or "TEXT")
        return columns

    async def run_ddl(self, statement: str) -> None:
        await self._exec(statement)

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        sql = (f"INSERT INTO {HISTORY} (pipeline, table_name, change, column_name, old_definition, "
               "new_definition, ddl, applied) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        values = [(pipeline, c.table, c.kind, c.column, c.old, c.new, c.ddl, c.applied) for c in changes]
        await self.d._run(self.d.conn.executemany, sql, values)

    async def savepoint(self) -> None:
        self.depth += 1
        await self._exec(f"SAVEPOINT conduitd_{self.depth}")

    async def rollback_to_savepoint(self) -> None:
        await self._exec(f"ROLLBACK TO conduitd_{self.depth}")
        await self._exec(f"RELEASE conduitd_{self.depth}")
        self.depth -= 1

    async def release_savepoint(self) -> None:
        await self._exec(f"RELEASE conduitd_{self.depth}")
        self.depth -= 1

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        names = [quote(c.name) for c in columns]
        sql = f"INSERT INTO {quote(table)} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        updates = [n for c, n in zip(columns, names, strict=True) if c.name not in key]
        if key:
            target = ", ".join(quote(k) for k in key)
            action = f"UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in updates)}" if updates else "NOTHING"
            sql += f" ON CONFLICT ({target}) DO {action}"
        values = payload if isinstance(payload, list) else self.d.dialect.encode(rows, columns)
        sent = 0

        def counted() -> Iterator[tuple[Any, ...]]:
            # executemany binds and runs one parameter set at a time: when it stops, the last one
            # taken is the refused row and those before it were written.
            nonlocal sent
            for row in values:
                sent += 1
                yield row

        def insert() -> None:
            self.d.conn.executemany(sql, counted())
        try:
            await self.d._run(insert)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            raise RowsRefused(f"SQLite refused the row: {exc}", sent - 1 if sent else None) from None

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # a refused row costs one executemany here, which names it: nothing to gain

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        match = " AND ".join(f"{quote(name)} = ?" for name in keys.column_names)
        values = list(zip(*(keys.column(i).to_pylist() for i in range(keys.num_columns)), strict=True))

        def delete() -> int:
            before = self.d.conn.total_changes
            self.d.conn.executemany(f"DELETE FROM {quote(table)} WHERE {match}", values)
            return self.d.conn.total_changes - before
        return await self.d._run(delete)

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None:
        sql = (f"INSERT INTO {quote(dlq_table)} (pipeline, partition, position, rule, reason, column_name, "
               "value, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        values = [(pipeline, r.partition, position_text(r.position), r.rule, r.reason, r.column, r.value, r.payload)
                  for r in rejects]
        await self.d._run(self.d.conn.executemany, sql, values)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        def delete() -> int:
            before = self.d.conn.total_changes
            self.d.conn.executemany(f"DELETE FROM {quote(dlq_table)} WHERE id = ?", [(i,) for i in ids])
            return self.d.conn.total_changes - before
        return await self.d._run(delete)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        now = datetime.now().astimezone().isoformat()
        if expected is None:
            cursor = await self._exec(
                f"INSERT INTO {CHECKPOINTS} (pipeline, partition, position, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING", (pipeline, partition, position_text(new), now))
        else:
            cursor = await self._exec(
                f"UPDATE {CHECKPOINTS} SET position = ?, updated_at = ? "
                "WHERE pipeline = ? AND partition = ? AND position = ?",
                (position_text(new), now, pipeline, partition, position_text(expected)))
        return cursor.rowcount == 1
