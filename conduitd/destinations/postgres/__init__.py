"""PostgreSQL destination: rows by COPY, DLQ rows and checkpoints in the same transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import asyncpg
import orjson

from conduitd.config import PostgresDestinationConfig, ResourceConfig
from conduitd.core.dsn import DsnError, parse_dsn
from conduitd.core.prepare import Prepared, prepare
from conduitd.core.records import Batch, Position
from conduitd.core.schema import Column
from conduitd.destinations.base import CheckpointRow, CommitResult, DlqEntry, DlqFilter
from conduitd.destinations.postgres import ddl
from conduitd.destinations.postgres.errors import translate, unreachable
from conduitd.destinations.postgres.privileges import write_problems
from conduitd.destinations.postgres.transaction import CHECKPOINTS, HISTORY, PostgresDialect, PostgresTransaction
from conduitd.dlq_sinks import DlqSink
from conduitd.runtime.commit import commit_prepared


def describe_dsn(dsn: str) -> str:
    """host:port/db of a DSN (either form), without user or password: safe for logs and errors."""
    try:
        return parse_dsn(dsn).where()
    except DsnError:
        return "(a DSN that cannot be parsed)"


class PostgresDestination:
    """One connection per pipeline; every batch is one transaction on it."""

    def __init__(self, config: PostgresDestinationConfig) -> None:
        self.config = config
        self.schema = config.db_schema
        self._conn: asyncpg.Connection | None = None
        self.params = config.connect_params
        self.where = self.params.where()
        self.dialect = PostgresDialect(self.schema)
        self._live: dict[str, dict[str, Column] | None] = {}
        self._removed_warned: dict[str, set[str]] = {}

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("the PostgreSQL destination is not open")
        return self._conn

    async def open(self, *, read_only: bool = False) -> None:
        if self._conn is not None:
            raise RuntimeError("the PostgreSQL destination is already open")
        try:
            # Connect parameters parsed by conduitd: asyncpg never parses the user's DSN (its
            # parser's errors quote the password), and the password travels as a keyword.
            self._conn = await asyncpg.connect(
                **self.params.connect_kwargs(), timeout=self.params.connect_timeout or self.config.connect_timeout,
                server_settings={"application_name": f"conduitd {self.schema}"[:63]})
        except (TimeoutError, OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise unreachable(exc, self.where) from None
        if read_only:
            return
        if not await self._schema_exists():
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
            # the schema is there, which a role confined to its schema does not have.
            await self._create_if_missing(f"CREATE SCHEMA IF NOT EXISTS {ddl.quote(self.schema)}")
        await self._create_tables_if_missing({
            CHECKPOINTS: f"CREATE TABLE IF NOT EXISTS {ddl.qualified(self.schema, CHECKPOINTS)} ("
            "pipeline text NOT NULL, partition text NOT NULL, position jsonb NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, partition))",
            HISTORY: f"CREATE TABLE IF NOT EXISTS {ddl.qualified(self.schema, HISTORY)} ("
            "id bigserial PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), pipeline text NOT NULL, "
            "table_name text NOT NULL, change text NOT NULL, column_name text, old_definition text, "
            "new_definition text, ddl text, applied boolean NOT NULL)"})

    async def _schema_exists(self) -> bool:
        try:
            return bool(await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", self.schema))
        except Exception as exc:
            raise translate(exc) from exc

    async def _create_tables_if_missing(self, statements: dict[str, str]) -> None:
        """Create the tables of `statements` ({name: CREATE TABLE IF NOT EXISTS ...}) that are not
        there yet; an existing table is left alone (its owner may be another role)."""
        try:
            present = {r[0] for r in await self.conn.fetch(
                "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relname = ANY($2::text[])", self.schema, list(statements))}
        except Exception as exc:
            raise translate(exc) from exc
        missing = [sql for name, sql in statements.items() if name not in present]
        if missing:
            await self._create_if_missing(";".join(missing))

    async def _create_if_missing(self, statements: str) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements. Replicas starting together race on them: the
        loser's IF NOT EXISTS saw no object, then collides with the one just committed (a unique
        violation on the catalog, or "type ... already exists"); once more, it sees it and passes."""
        for attempt in range(3):
            try:
                await self.conn.execute(statements)
                return
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateObjectError, asyncpg.DuplicateTableError,
                    asyncpg.DuplicateSchemaError) as exc:
                if attempt == 2:
                    raise translate(exc) from exc
            except Exception as exc:
                raise translate(exc) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    async def write_problems(self, resource: ResourceConfig) -> list[str]:
        tables = [CHECKPOINTS, HISTORY, resource.table_name]
        if resource.dlq.type == "table":
            tables.append(resource.dlq_table)
        try:
            return await write_problems(self.conn, self.schema, tables)
        except Exception as exc:
            raise translate(exc) from exc

    async def ping(self) -> None:
        try:
            await self.conn.fetchval("SELECT 1")
        except Exception as exc:
            raise translate(exc) from exc

    async def setup(self, resource: ResourceConfig) -> None:
        if resource.dlq.type != "table":
            return  # the DLQ is a file or a topic
        await self._create_tables_if_missing({resource.dlq_table: (
            f"CREATE TABLE IF NOT EXISTS {ddl.qualified(self.schema, resource.dlq_table)} ("
            "id bigserial PRIMARY KEY, pipeline text NOT NULL, partition text, position jsonb, "
            "rule text NOT NULL, reason text NOT NULL, column_name text, value text, payload text, "
            "created_at timestamptz NOT NULL DEFAULT now())")})

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {row.partition: row.position for row in await self.list_checkpoints(pipeline)}

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        sql = f"SELECT pipeline, partition, position::text, updated_at FROM {ddl.qualified(self.schema, CHECKPOINTS)}"
        try:
            rows = await (self.conn.fetch(sql + " WHERE pipeline = $1 ORDER BY partition", pipeline)
                          if pipeline else self.conn.fetch(sql + " ORDER BY pipeline, partition"))
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return []  # nothing was ever committed here
        except Exception as exc:
            raise translate(exc) from exc
        return [CheckpointRow(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        table = ddl.qualified(self.schema, CHECKPOINTS)
        if partition is None:
            status = await self.conn.execute(f"DELETE FROM {table} WHERE pipeline = $1", pipeline)
        else:
            status = await self.conn.execute(f"DELETE FROM {table} WHERE pipeline = $1 AND partition = $2",
                                             pipeline, partition)
        return int(status.split()[-1])

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        try:
            return await ddl.table_columns(self.conn, self.schema, table)
        except Exception as exc:
            raise translate(exc) from exc

    async def read_dlq(self, resource: ResourceConfig, where: DlqFilter) -> list[DlqEntry]:
        sql = ("SELECT id, pipeline, partition, position::text, rule, reason, column_name, value, payload, created_at "
               f"FROM {ddl.qualified(self.schema, resource.dlq_table)} WHERE pipeline = $1")
        params: list[object] = [resource.name]
        for condition, value in (("rule = ${}", where.rule), ("created_at >= ${}", where.since),
                                 ("created_at < ${}", where.until)):
            if value is not None:
                params.append(value)
                sql += " AND " + condition.format(len(params))
        sql += " ORDER BY id" + (f" LIMIT {int(where.limit)}" if where.limit else "")
        try:
            rows = await self.conn.fetch(sql, *params)
        except Exception as exc:
            raise translate(exc) from exc
        return [DlqEntry(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else None, *r[4:]) for r in rows]

    async def prepare_batch(self, resource: ResourceConfig, batch: Batch) -> Prepared:
        table = resource.table_name
        if table not in self._live:
            return Prepared(batch, live=None, known=False)  # the table is not known yet: prepared in the commit
        return await self._prepare(resource, batch, self._live[table])

    async def _prepare(self, resource: ResourceConfig, batch: Batch, live: dict[str, Column] | None) -> Prepared:
        warned = self._removed_warned.setdefault(resource.table_name, set())
        return await asyncio.to_thread(prepare, self.dialect, resource, batch, live, removed_warned=warned)

    async def commit_batch(self, resource: ResourceConfig, prepared: Prepared,
                           dlq: DlqSink | None = None) -> CommitResult:
        def again(live: dict[str, Column] | None) -> Awaitable[Prepared]:
            return self._prepare(resource, prepared.batch, live)

        try:
            async with self.conn.transaction():
                # Deferred constraints (a DEFERRABLE INITIALLY DEFERRED foreign key, a deferred
                # constraint trigger) would refuse a row only at COMMIT, where no row can be told
                # apart any more and the whole batch would fail on every run: check them at each
                # statement, so a refused row is found and dead-lettered like any other.
                await self.conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                tx = PostgresTransaction(self.conn, self.schema)
                result, final = await commit_prepared(tx, resource, prepared, again, dlq)
            prepared.batch.timings.end("commit")
        except Exception as exc:
            self._live.pop(resource.table_name, None)
            raise translate(exc) from exc
        if final.evolution is not None and any(c.applied for c in final.evolution.changes):
            self._live.pop(resource.table_name, None)  # read again before the next batch is prepared
        else:
            self._live[resource.table_name] = final.live
        return result

