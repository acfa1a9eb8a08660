"""The commit steps only PostgreSQL has, inside one asyncpg transaction: rows by COPY (binary or
CSV, see `dialect`), upserts through a temporary staging table merged with `INSERT ... ON
CONFLICT DO UPDATE`, deletes, screening refused rows, DDL. The bookkeeping steps are shared
(`SqlTransaction`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import numpy as np
import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.base import RowsPartlyRefused, RowsRefused
from conduitd.destinations.postgres import ddl, row_merge, screen
from conduitd.destinations.postgres.dialect import Payload, PostgresDialect
from conduitd.destinations.postgres.driver import PostgresDriver
from conduitd.destinations.postgres.errors import translate
from conduitd.destinations.postgres.refusal import refusal
from conduitd.destinations.sql import Bookkeeping, SqlTransaction
from conduitd.errors import ConduitError, TransientError

_STAGE = "conduitd_stage"
_MERGE = "conduitd_merge"
_SCREEN = "conduitd_screen"


async def _pieces(data: bytes, size: int = 4 << 20) -> AsyncIterator[memoryview]:
    """COPY data in 4 MiB messages, as views of the encoded bytes (a file object would be read
    in 512 KiB copies through a thread; one message per batch could pass the server's 1 GiB
    message limit)."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start:start + size]


class PostgresTransaction(SqlTransaction):
    """See the module docstring; one instance per batch transaction."""

    def __init__(self, books: Bookkeeping, driver: PostgresDriver) -> None:
        super().__init__(books)
        self.pg = driver
        self.conn = driver.conn
        self.schema = driver.schema

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
            await self.pg.run(
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
        await self.conn.execute(f"SAVEPOINT {_SCREEN}")
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
        # The screen leaves nothing behind.
        await self.pg.run(f"ROLLBACK TO SAVEPOINT {_SCREEN}", f"RELEASE SAVEPOINT {_SCREEN}")
        return sorted(long + found)

    async def _copy(self, schema: str | None, table: str, rows: pa.Table, columns: Sequence[Column],
                    payload: Payload | None = None) -> None:
        if payload is None:
            payload = await asyncio.to_thread(PostgresDialect(self.schema).encode, rows, columns)
        options = {"format": "csv", "null": ""} if payload.format == "csv" else {"format": "binary"}
        names = [c.name for c in columns]
        try:
            await self.pg.watched(self.conn.copy_to_table(
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
            await self.pg.run(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
                              f"SELECT {names} FROM {target} WITH NO DATA", f"TRUNCATE {stage}")
            await self._copy(None, stage, keys, columns)
            match = " AND ".join(f"t.{ddl.quote(c.name)} = d.{ddl.quote(c.name)}" for c in columns)
            return await self.pg.execute(f"DELETE FROM {target} t USING {stage} d WHERE {match}")
        except Exception as exc:
            raise translate(exc) from exc
