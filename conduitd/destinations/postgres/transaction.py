"""The commit steps in PostgreSQL dialect, inside one asyncpg transaction.

Rows travel by COPY: binary (encoded from Arrow, vectorised) when every column's type has a
binary encoder, CSV otherwise. Upserts COPY into a temporary staging table and merge with
`INSERT ... ON CONFLICT DO UPDATE`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from conduitd.core.records import Position, Reject, SchemaChange, position_text
from conduitd.core.schema import Column, create_table_sql
from conduitd.destinations.base import RowsRefused
from conduitd.destinations.postgres import ddl, row_merge, screen
from conduitd.destinations.postgres.copy_binary import PG_BINARY_TYPES, encode_copy_binary
from conduitd.destinations.postgres.errors import translate
from conduitd.destinations.postgres.refusal import refusal
from conduitd.destinations.refused import RowsPartlyRefused
from conduitd.errors import ConduitError, TransientError

CHECKPOINTS = "conduitd_checkpoints"
_STAGE = "conduitd_stage"
_MERGE = "conduitd_merge"
_WATCH_SECONDS = 0.5

T = TypeVar("T")


HISTORY = "conduitd_schema_history"


def binary_encodable(columns: Sequence[Column]) -> bool:
    return all(c.native in PG_BINARY_TYPES and (c.native != "numeric" or pa.types.is_decimal(c.arrow))
               for c in columns)


@dataclass(frozen=True)
class Payload:
    """Rows encoded for COPY: PostgreSQL's binary format, or CSV for types it has no encoder for."""

    data: bytes
    format: str


class PostgresDialect:
    """Types, DDL text and COPY encoding for PostgreSQL (pure; safe in worker threads)."""

    max_identifier_bytes = ddl.MAX_IDENTIFIER_BYTES
    max_columns = ddl.MAX_COLUMNS

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def name_problem(self, name: str) -> str | None:
        return ddl.name_problem(name)

    def name_key(self, name: str) -> str:
        return name  # quoted identifiers are compared exactly

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        return ddl.column_for(name, arrow)

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(ddl.qualified(self.schema, table), columns, key, ddl.quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {ddl.qualified(self.schema, table)} ADD COLUMN {ddl.quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        name = ddl.quote(column.name)
        return (f"ALTER TABLE {ddl.qualified(self.schema, table)} ALTER COLUMN {name} TYPE {column.sql} "
                f"USING {name}::{column.sql}")

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # ALTER COLUMN ... TYPE gives the column the new type

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> Payload:
        if binary_encodable(columns):
            return Payload(encode_copy_binary(rows, [c.native for c in columns]), "binary")
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        return Payload(buffer.getvalue(), "csv")


def _no_nul(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "\\u0000")


async def _pieces(data: bytes, size: int = 4 << 20) -> AsyncIterator[memoryview]:
    """COPY data in 4 MiB messages, as views of the encoded bytes (a file object would be read
    in 512 KiB copies through a thread; one message per batch could pass the server's 1 GiB
    message limit)."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start:start + size]


class PostgresTransaction:
    """See the module docstring; one instance per batch transaction."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.depth = 0

    async def _execute(self, sql: str, *args: Any) -> str:
        try:
            return str(await self.conn.execute(sql, *args))
        except Exception as exc:
            raise translate(exc) from exc

    async def _executemany(self, sql: str, records: Sequence[Sequence[Any]]) -> None:
        try:
            await self._watched(self.conn.executemany(sql, records))
        except Exception as exc:
            raise translate(exc) from exc

    async def _watched(self, operation: Awaitable[T]) -> T:
        """Await a COPY or an executemany. asyncpg waits for the socket to drain between their
        messages and is never woken if the connection drops meanwhile (the server stopped mid-way):
        watch for that, so the write fails (and is retried) instead of waiting forever."""
        task = asyncio.ensure_future(operation)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_WATCH_SECONDS)
                if not task.done() and self.conn.is_closed():
                    raise TransientError("PostgreSQL connection lost mid-write")
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: what the caller sees is the error raised above

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        try:
            return await ddl.table_columns(self.conn, self.schema, table)
        except Exception as exc:
            raise translate(exc) from exc

    async def run_ddl(self, statement: str) -> None:
        try:
            await self.conn.execute(statement)
        except (asyncpg.DuplicateTableError, asyncpg.DuplicateColumnError, asyncpg.UniqueViolationError,
                asyncpg.DuplicateObjectError) as exc:
            # Another replica changed the table at the same moment: roll back and prepare again
            # against the table as it now is.
            raise TransientError(f"concurrent schema change ({exc.sqlstate}): {exc}") from None
        except Exception as exc:
            raise translate(exc) from exc

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        records = [(pipeline, c.table, c.kind, c.column, c.old, c.new, c.ddl, c.applied) for c in changes]
        await self._executemany(
            f"INSERT INTO {ddl.qualified(self.schema, HISTORY)} (pipeline, table_name, change, column_name, "
            "old_definition, new_definition, ddl, applied) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", records)

    async def savepoint(self) -> None:
        self.depth += 1
        await self._execute(f"SAVEPOINT conduitd_{self.depth}")

    async def rollback_to_savepoint(self) -> None:
        # One round trip: isolating refused rows runs this once per refused row.
        await self._execute(f"ROLLBACK TO SAVEPOINT conduitd_{self.depth}; RELEASE SAVEPOINT conduitd_{self.depth}")
        self.depth -= 1

    async def release_savepoint(self) -> None:
        await self._execute(f"RELEASE SAVEPOINT conduitd_{self.depth}")
        self.depth -= 1

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        encoded = payload if isinstance(payload, Payload) else None
        try:
            if not key:
                await self._copy(self.schema, table, rows, columns, encoded)
                return
            names = [ddl.quote(c.name) for c in columns]
            # Only the batch's columns, with their types (lengths too) but no constraints: a NOT
            # NULL column the batch lacks gets its default (insert) or keeps its value (update)
            # in the table, where `LIKE` gave it NULL in the stage and refused every row.
            # The stage numbers its rows in COPY order (from 1), for a merge retried row by row.
            row = row_merge.row_column([c.name for c in columns])
            await self._execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DROP AS SELECT {', '.join(names)} "
                f"FROM {ddl.qualified(self.schema, table)} WITH NO DATA; "
                f"ALTER TABLE {_STAGE} ADD COLUMN IF NOT EXISTS {ddl.quote(row)} bigint GENERATED ALWAYS AS IDENTITY; "
                f"TRUNCATE {_STAGE} RESTART IDENTITY")
            await self._copy(None, _STAGE, rows, columns, encoded)
            updates = [f"{n} = EXCLUDED.{n}" for c, n in zip(columns, names, strict=True) if c.name not in key]
            action = f"UPDATE SET {', '.join(updates)}" if updates else "NOTHING"
            target = ddl.qualified(self.schema, table)
            try:
                # Under its own savepoint (same round trip): a refused merge leaves the stage.
                await self.conn.execute(
                    f"SAVEPOINT {_MERGE}; INSERT INTO {target} ({', '.join(names)}) "
                    f"SELECT {', '.join(names)} FROM {_STAGE} "
                    f"ON CONFLICT ({', '.join(ddl.quote(k) for k in key)}) DO {action}; RELEASE SAVEPOINT {_MERGE}")
            except asyncpg.PostgresError as exc:
                refused = translate(exc)
                if not isinstance(refused, RowsRefused):
                    raise
                await self._merge_by_row(target, row, [c.name for c in columns], key, action, refused)
        except Exception as exc:
            raise translate(exc) from exc

    async def _merge_by_row(self, target: str, row: str, names: Sequence[str], key: Sequence[str], action: str,
                            refused: RowsRefused) -> None:
        """The merge was refused without naming a row: merge the stage row by row in one server
        statement (see `row_merge`) and raise RowsPartlyRefused with the rows refused, the
        others being written. If that statement cannot run, raise `refused` (the caller then
        narrows by halves)."""
        await self.conn.execute(f"ROLLBACK TO SAVEPOINT {_MERGE}")
        try:
            await self.conn.execute(row_merge.merge_rows_sql(target, _STAGE, row, names, key, action))
            found = await self.conn.fetch(row_merge.refused_query())
        except asyncpg.PostgresError as exc:
            if isinstance(translate(exc), TransientError):
                raise
            await self.conn.execute(f"ROLLBACK TO SAVEPOINT {_MERGE}; RELEASE SAVEPOINT {_MERGE}")
            raise refused from exc
        await self.conn.execute(f"RELEASE SAVEPOINT {_MERGE}")
        if found:
            raise RowsPartlyRefused([(int(r[0]), row_merge.reason(str(r[1]), str(r[2]), r[3])) for r in found])

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        """See `Transaction.screen_rows` and the `screen` module: the batch is copied into a
        temporary table with its row numbers and judged by one query, under a savepoint that is
        always rolled back."""
        names = [c.name for c in columns]
        long = screen.too_long(rows, columns, table)
        rest = np.ones(rows.num_rows, dtype=bool)
        rest[[row for row, _ in long]] = False
        await self.savepoint()
        try:
            query = await screen.screen_query(self.conn, ddl.qualified(self.schema, table), table, names, key)
            if query is not None:
                await self.conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {screen.SCREEN} ON COMMIT DROP AS SELECT "
                    f"{', '.join(ddl.quote(n) for n in names)}, 0::bigint AS {screen.ROW} "
                    f"FROM {ddl.qualified(self.schema, table)} WITH NO DATA; TRUNCATE {screen.SCREEN}")
                numbered = rows.append_column(screen.ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
                await self._copy(None, screen.SCREEN, numbered.filter(pa.array(rest)),
                                 [*columns, Column(screen.ROW, pa.int64(), "bigint", native="int8")])
                found = [(int(r[0]), str(r[1])) for r in await self.conn.fetch(query)]
            else:
                found = []
        except (asyncpg.PostgresError, RowsRefused, ConduitError):
            # A screen that fails (an expression that errs, no TEMP privilege) finds nothing: the
            # write attempts still find every row. A lost connection fails the rollback below.
            found = []
        await self.rollback_to_savepoint()  # the screen leaves nothing behind
        return sorted(long + found)

    async def _copy(self, schema: str | None, table: str, rows: pa.Table, columns: Sequence[Column],
                    payload: Payload | None = None) -> None:
        if payload is None:
            payload = await asyncio.to_thread(PostgresDialect(self.schema).encode, rows, columns)
        options = {"format": "csv", "null": ""} if payload.format == "csv" else {"format": "binary"}
        names = [c.name for c in columns]
        try:
            await self._watched(self.conn.copy_to_table(
                table, schema_name=schema, columns=names, source=_pieces(payload.data), **options))
        except asyncpg.PostgresError as exc:
            raise refusal(exc, table, names, by_line=payload.format == "binary") from exc

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        target = ddl.qualified(self.schema, table)
        live = await self.table_columns(table) or {}
        columns = [live[name] for name in keys.column_names]
        stage = "conduitd_deletes"
        names = ", ".join(ddl.quote(c.name) for c in columns)
        try:
            await self._execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
                                f"SELECT {names} FROM {target} WITH NO DATA")
            await self._execute(f"TRUNCATE {stage}")
            await self._copy(None, stage, keys, columns)
            match = " AND ".join(f"t.{ddl.quote(c.name)} = d.{ddl.quote(c.name)}" for c in columns)
            status = await self._execute(f"DELETE FROM {target} t USING {stage} d WHERE {match}")
        except Exception as exc:
            raise translate(exc) from exc
        return int(status.split()[-1])

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None:
        # PostgreSQL text cannot hold NUL, which a field name or a value from data may: escaped as JSON does.
        records = [(pipeline, r.partition, position_text(r.position), r.rule, _no_nul(r.reason), _no_nul(r.column),
                    _no_nul(r.value), r.payload.replace("\x00", "\\u0000")) for r in rejects]
        await self._executemany(
            f"INSERT INTO {ddl.qualified(self.schema, dlq_table)} (pipeline, partition, position, rule, "
            "reason, column_name, value, payload) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)", records)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        table = ddl.qualified(self.schema, dlq_table)
        status = await self._execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", list(ids))
        return int(status.split()[-1])

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        table = ddl.qualified(self.schema, CHECKPOINTS)
        if expected is None:
            status = await self._execute(
                f"INSERT INTO {table} (pipeline, partition, position) VALUES ($1, $2, $3::jsonb) "
                "ON CONFLICT DO NOTHING", pipeline, partition, position_text(new))
        else:
            status = await self._execute(
                f"UPDATE {table} SET position = $3::jsonb, updated_at = now() "
                "WHERE pipeline = $1 AND partition = $2 AND position = $4::jsonb",
                pipeline, partition, position_text(new), position_text(expected))
        return status.endswith(" 1")

