"""One transaction of a file destination: the `Transaction` steps over a private copy of the
published `State`. Rows and rejected rows are written at once, each `write_rows` as a new part
(locally under a temporary name, on S3 under its final name: see `storage`), so memory holds one
batch at most; nothing is published until the destination replaces the state file at COMMIT.
A transaction that does not commit removes what it wrote (`discard`); what a crash leaves is
removed when the destination opens, since the state file does not name it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from conduitd.core.records import Position, Reject, SchemaChange, position_text
from conduitd.core.schema import Column
from conduitd.destinations.files import formats, layout, refresh
from conduitd.destinations.files.dialect import parse_ddl
from conduitd.destinations.files.settings import EXTENSIONS, Format
from conduitd.destinations.files.state import Part, State, Table
from conduitd.destinations.files.storage import Storage
from conduitd.errors import ConduitError, ConfigError, TransientError


class FileTransaction:
    """See the module docstring. `single`: the destination is one output file (one table)."""

    def __init__(self, storage: Storage, state: State, fmt: Format, options: dict[str, Any], token: str,
                 now: Callable[[], datetime], *, single: bool) -> None:
        self.storage = storage
        self.state = state
        self.fmt = fmt
        self.options = options
        self.token = token
        self.now = now
        self.single = single
        self.state.sequence += 1
        self.written: list[str] = []
        """Names of the parts written, as published (locally they sit at `layout.temporary` until then)."""
        self.obsolete: list[str] = []
        """Published files this transaction replaces: removed once it is published."""

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (OSError, pa.ArrowException) as exc:
            raise self.storage.error(exc, "writing a part") from None

    def _new_name(self, directory: str, ext: str) -> str:
        name = layout.part_name(directory, self.state.sequence, self.token, len(self.written) + 1, ext)
        self.written.append(name)
        return name

    def _where(self, name: str) -> str:
        """Where the part `name` is now: its temporary name locally while unpublished."""
        return layout.temporary(name) if self.storage.renames and name in self.written else name

    # -- schema ------------------------------------------------------------------------------------

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        found = self.state.tables.get(table)
        return None if found is None else found.as_columns()

    async def run_ddl(self, statement: str) -> None:
        ddl = parse_ddl(statement)
        tables = self.state.tables
        if ddl.op == "create":
            if ddl.table in tables:
                raise TransientError(f"file destination: table {ddl.table!r} exists already (a concurrent change)")
            held = [t for t in tables if not refresh.is_staging(t)]
            if self.single and held and ddl.table != refresh.staging_name(held[0], None):
                raise ConfigError(f"file destination {self.storage.shown}: one output file holds one table; "
                                  f"it holds {held[0]!r}, so {ddl.table!r} cannot be written to it")
            tables[ddl.table] = Table([(c.name, c.sql) for c in ddl.columns])
            return
        found = tables.get(ddl.table)
        if found is None:
            raise ConduitError(f"file destination: table {ddl.table!r} does not exist")
        column = ddl.columns[0]
        names = [n for n, _ in found.columns]
        if ddl.op == "add":
            if column.name in names:
                raise TransientError(f"file destination: column {column.name!r} exists already (a concurrent change)")
            found.columns.append((column.name, column.sql))
        elif column.name not in names:
            raise ConduitError(f"file destination: table {ddl.table!r} has no column {column.name!r}")
        else:
            found.columns[names.index(column.name)] = (column.name, column.sql)

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        raise ConduitError("file destinations have no savepoints (their capabilities say so)")

    # -- rows --------------------------------------------------------------------------------------

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        if key:
            raise ConfigError("file destinations append: `mode: upsert` cannot be written to files")
        found = self.state.tables.get(table)
        if found is None:
            raise ConduitError(f"file destination: table {table!r} does not exist")
        name = self._new_name(layout.folder(table), EXTENSIONS[self.fmt])
        selected = rows.select([c.name for c in columns]) if rows.column_names != [c.name for c in columns] else rows
        await self._io(self.storage.write, self._where(name),
                       lambda stream: formats.write(stream, selected, self.fmt, **self.options))
        found.parts.append(Part(name, rows.num_rows))

    async def adopt(self, table: str, parts: Sequence[Part]) -> None:
        """Make copies of `parts` (published parts of another table: a full refresh's staging
        table) parts of `table`, published with this transaction."""
        found = self.state.tables[table]
        for part in parts:
            name = self._new_name(layout.folder(table), "." + part.name.rpartition(".")[2])
            await self._io(self.storage.copy, part.name, self._where(name))
            found.parts.append(Part(name, part.rows))

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # files refuse no value

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        raise ConfigError("file destinations append: rows cannot be deleted from them")

    # -- the DLQ beside the parts --------------------------------------------------------------------

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None:  # all written
        at = self.now().isoformat()
        lines = []
        for r in rejects:
            lines.append(orjson.dumps({"id": self.state.next_dlq_id, "pipeline": pipeline, "partition": r.partition,
                                       "position": r.position, "rule": r.rule, "reason": r.reason, "column": r.column,
                                       "value": r.value, "payload": r.payload, "created_at": at}))
            self.state.next_dlq_id += 1
        await self._write_dlq(dlq_table, b"\n".join(lines) + b"\n")

    async def _write_dlq(self, dlq_table: str, data: bytes) -> None:
        name = self._new_name(f"{layout.DLQ_DIR}/{layout.folder(dlq_table)}", ".jsonl")
        await self._io(self.storage.write, self._where(name), lambda stream: stream.write(data))
        self.state.dlq.setdefault(dlq_table, []).append(name)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        wanted, removed = set(ids), 0
        for name in list(self.state.dlq.get(dlq_table, [])):
            data = await self._io(self.storage.read, self._where(name)) or b""
            lines = [line for line in data.splitlines() if line.strip()]
            kept = [line for line in lines if orjson.loads(line)["id"] not in wanted]
            if len(kept) == len(lines):
                continue
            removed += len(lines) - len(kept)
            self.state.dlq[dlq_table].remove(name)
            self.obsolete.append(name)
            if kept:
                await self._write_dlq(dlq_table, b"\n".join(kept) + b"\n")
        return removed

    # -- bookkeeping -------------------------------------------------------------------------------

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        at = self.now().isoformat()
        for change in changes:
            self.state.record(pipeline, change, at)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        stored = self.state.checkpoints.get(pipeline, {}).get(partition)
        if (stored is None) != (expected is None):
            return False
        if stored is not None and position_text(stored["position"]) != position_text(expected):
            return False
        self.state.checkpoints.setdefault(pipeline, {})[partition] = {"position": new,
                                                                      "updated_at": self.now().isoformat()}
        return True

    def discard(self) -> None:
        """Remove what this transaction wrote (it is not committed); blocking."""
        # What cannot be removed now is not named by the state file: removed at the next open.
        for name in self.written:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.storage.delete(self._where(name))

