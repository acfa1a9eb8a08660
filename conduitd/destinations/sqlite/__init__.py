"""SQLite, the embedded default destination (stdlib `sqlite3`, run off the event loop).

One connection lives on one worker thread (`driver`). Rows, DLQ rows and checkpoints commit in
one transaction; WAL journaling keeps a killed process from losing or half-writing a committed
batch. Types: see `dialect`.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conduitd.config import PipelineConfig, SqliteDestinationConfig
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities
from conduitd.destinations.rollback import finish
from conduitd.destinations.sql import CHECKPOINTS, Bookkeeping, SqlDestination
from conduitd.destinations.sql.refresh import RefreshTransaction
from conduitd.destinations.sqlite.dialect import SqliteDialect, quote
from conduitd.destinations.sqlite.driver import SqliteDriver
from conduitd.destinations.sqlite.transaction import SqliteTransaction, table_columns

CAPABILITIES = Capabilities(control=True, transactional_ddl=True, savepoints=True, upsert=True, prepare_ahead=False,
                            atomic_checkpoint=True, leases=True)


def _on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class SqliteDestination(SqlDestination):
    """See the module docstring."""

    dialect: SqliteDialect

    capabilities = CAPABILITIES

    def __init__(self, config: SqliteDestinationConfig) -> None:
        self.config = config
        self.dialect = SqliteDialect()
        self.driver = SqliteDriver(config.path)
        self.books = Bookkeeping(self.driver)

    async def open(self, *, read_only: bool = False) -> None:
        self.driver.start()
        try:
            await self.driver.call(self._connect_read_only if read_only else self._connect)
            if not read_only:
                await self.books.create_tables()
                await self.driver.call(self._check_writable)
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
        self.driver.conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False,
                                           timeout=30)

    def _connect(self) -> None:
        conn = sqlite3.connect(self.config.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        self.driver.conn = conn

    def _check_writable(self) -> None:
        # SQLite opens a file it cannot write read-only without a word, and the tables may exist
        # already: a write that changes nothing, rolled back, finds out now rather than at the
        # first commit.
        conn = self.driver.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE 0")
        finally:
            conn.execute("ROLLBACK")

    async def close(self) -> None:
        await self.driver.stop()

    def bookkeeping(self) -> Bookkeeping:
        return self.books

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []  # a file: whether it can be written is checked with the run's other outputs

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        await self.driver.run("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(self.books, self.driver, self.dialect)
            await self.driver.run("COMMIT")
        except BaseException:
            await finish(self.driver.call(self._rollback))
            raise

    def _rollback(self) -> None:
        # Some errors (a full disk, an I/O error) roll the transaction back by themselves; a
        # ROLLBACK then would fail and hide the error that matters.
        if self.driver.conn.in_transaction:
            self.driver.conn.execute("ROLLBACK")

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await table_columns(self.driver, table)

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        # SQLite has no CREATE TABLE ... LIKE: the target's own statement under the new name.
        rows = await tx.driver.fetch("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (target,))
        await tx.run_ddl(f"CREATE TABLE {quote(staging)} {column_list(str(rows[0][0]))}")

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        return f"ALTER TABLE {quote(old)} RENAME TO {quote(new)}"


def column_list(create: str) -> str:
    """What follows the table name in a CREATE TABLE statement as sqlite_master keeps it: the
    name is quoted ("...", [...], `...`, with doubled quotes inside) or a bare word."""
    rest = create.lstrip()[len("CREATE TABLE"):].lstrip()
    if rest[:13].upper() == "IF NOT EXISTS":
        rest = rest[13:].lstrip()
    closing = {'"': '"', "[": "]", "`": "`", "'": "'"}.get(rest[:1])
    if closing is None:
        end = min((i for i in (rest.find("("), *(rest.find(c) for c in " \t\n")) if i >= 0), default=len(rest))
        return rest[end:].lstrip()
    i = 1
    while i < len(rest):
        if rest[i] == closing:
            if rest[i + 1:i + 2] == closing and closing != "]":
                i += 2
                continue
            return rest[i + 1:].lstrip()
        i += 1
    raise ValueError(f"cannot read the table name of {create[:80]!r}")


__all__ = ["SqliteDestination", "SqliteDialect", "column_list", "quote"]
