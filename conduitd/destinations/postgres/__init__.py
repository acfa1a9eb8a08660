"""PostgreSQL destination: rows by COPY, DLQ rows and checkpoints in the same transaction."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import orjson

from conduitd.commit import write_batch
from conduitd.config import PostgresDestinationConfig, ResourceConfig
from conduitd.destinations.base import CheckpointRow, CommitResult
from conduitd.destinations.postgres import ddl
from conduitd.destinations.postgres.errors import translate, unreachable
from conduitd.destinations.postgres.transaction import CHECKPOINTS, PostgresTransaction
from conduitd.records import Batch, Position


def describe_dsn(dsn: str) -> str:
    """host:port/db of a DSN, without user or password: safe for logs and errors."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


class PostgresDestination:
    """One connection per pipeline; every batch is one transaction on it."""

    def __init__(self, config: PostgresDestinationConfig) -> None:
        self.config = config
        self.schema = config.db_schema
        self._conn: asyncpg.Connection | None = None
        self.where = describe_dsn(config.dsn.get_secret_value())

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("the PostgreSQL destination is not open")
        return self._conn

    async def open(self) -> None:
        if self._conn is not None:
            raise RuntimeError("the PostgreSQL destination is already open")
        try:
            self._conn = await asyncpg.connect(
                self.config.dsn.get_secret_value(), timeout=self.config.connect_timeout,
                server_settings={"application_name": f"conduitd {self.schema}"[:63]})
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise unreachable(exc, self.where) from None
        try:
            await self.conn.execute(
                f"CREATE SCHEMA IF NOT EXISTS {ddl.quote(self.schema)};"
                f"CREATE TABLE IF NOT EXISTS {ddl.qualified(self.schema, CHECKPOINTS)} ("
                "pipeline text NOT NULL, partition text NOT NULL, position jsonb NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, partition))")
        except asyncpg.UniqueViolationError:
            pass  # another replica created it at the same moment
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    async def ping(self) -> None:
        try:
            await self.conn.fetchval("SELECT 1")
        except Exception as exc:
            raise translate(exc) from exc

    async def prepare(self, resource: ResourceConfig) -> None:
        try:
            await self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {ddl.qualified(self.schema, resource.dlq_table)} ("
                "id bigserial PRIMARY KEY, pipeline text NOT NULL, partition text, position jsonb, "
                "rule text NOT NULL, reason text NOT NULL, column_name text, value text, payload text, "
                "created_at timestamptz NOT NULL DEFAULT now())")
        except asyncpg.UniqueViolationError:
            pass
        except Exception as exc:
            raise translate(exc) from exc

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return {row.partition: row.position for row in await self.list_checkpoints(pipeline)}

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        sql = f"SELECT pipeline, partition, position::text, updated_at FROM {ddl.qualified(self.schema, CHECKPOINTS)}"
        try:
            rows = await (self.conn.fetch(sql + " WHERE pipeline = $1 ORDER BY partition", pipeline)
                          if pipeline else self.conn.fetch(sql + " ORDER BY pipeline, partition"))
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

    async def commit_batch(self, resource: ResourceConfig, batch: Batch) -> CommitResult:
        try:
            async with self.conn.transaction():
                result = await write_batch(PostgresTransaction(self.conn, self.schema), resource, batch)
            batch.timings.end("commit")
            return result
        except Exception as exc:
            raise translate(exc) from exc
