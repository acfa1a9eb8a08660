"""The ClickHouse destination (see the package docstring): one engine (chdb or a server's HTTP
interface), calls one at a time; tables are qualified with the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conduitd.config import PipelineConfig
from conduitd.core.records import Position
from conduitd.core.schema import Column
from conduitd.destinations.base import CheckpointRow, DlqEntry, DlqFilter
from conduitd.destinations.clickhouse import CAPABILITIES
from conduitd.destinations.clickhouse.books import Books
from conduitd.destinations.clickhouse.client import Client
from conduitd.destinations.clickhouse.dialect import ClickHouseDialect
from conduitd.destinations.clickhouse.engine import open_engine
from conduitd.destinations.clickhouse.errors import unreachable
from conduitd.destinations.clickhouse.flush import StepHook, Versions, flush
from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig
from conduitd.destinations.clickhouse.transaction import ClickHouseTransaction, live_columns
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable


class ClickHouseDestination:
    """See the module docstring."""

    capabilities = CAPABILITIES

    def __init__(self, config: ClickHouseDestinationConfig) -> None:
        self.config = config
        self.dialect = ClickHouseDialect(config.database)
        self.after_step: StepHook | None = None
        """Called after each step of a batch's flush (`flush.STEPS`); tests inject failures with it."""
        self._books: Books | None = None
        self._read_only = False
        self._versions = Versions()
        self._settled: set[str] = set()
        """Pipelines whose interrupted batches were settled (`Books.recover`) by this destination."""

    @property
    def books(self) -> Books:
        if self._books is None:
            raise RuntimeError("the ClickHouse destination is not open")
        return self._books

    async def open(self, *, read_only: bool = False) -> None:
        if self._books is not None:
            raise RuntimeError("the ClickHouse destination is already open")
        try:
            engine = await asyncio.to_thread(open_engine, self.config)
        except ImportError as exc:
            raise ConfigError(f"destination {self.config.name!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - every cause is translated, none leaves
            raise unreachable(exc, self.config.where()) from None
        books = Books(Client(engine), self.config.database)
        try:
            await books.client.rows("SELECT 1")
            if not read_only:
                await books.create_tables()
        except ConduitError as exc:
            await books.client.close()
            if isinstance(exc, ConfigError):
                raise
            raise DependencyUnreachable(f"cannot use ClickHouse ({self.config.where()}): {exc}") from None
        except BaseException:
            await books.client.close()
            raise
        self._books, self._read_only = books, read_only

    async def close(self) -> None:
        books, self._books = self._books, None
        if books is not None:
            await books.client.close()

    async def ping(self) -> None:
        try:
            await self.books.client.rows("SELECT 1")
        except ConduitError as exc:
            raise DependencyUnreachable(f"ClickHouse ({self.config.where()}) does not answer: {exc}") from None

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return []  # a missing privilege is reported by the first statement that needs it

    async def setup(self, pipeline: PipelineConfig) -> None:
        await self.books.create_dlq_table(pipeline.dlq_table)

    async def _settle(self, pipeline: str) -> None:
        """Settle the pipeline's interrupted batches once (see `Books.recover`)."""
        if not self._read_only and pipeline not in self._settled:
            await self.books.recover(pipeline)
            self._settled.add(pipeline)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ClickHouseTransaction]:
        tx = ClickHouseTransaction(self.books)
        yield tx  # an exception here leaves nothing written: the steps only gathered what to write
        pipeline = tx.pending.pipeline
        if pipeline is not None:
            await self._settle(pipeline)
        try:
            await flush(self.books, tx.pending, self._versions, self.after_step)
        except BaseException:
            if pipeline is not None:
                self._settled.discard(pipeline)  # its undo may not have run: settle before the next batch
            raise

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        await self._settle(pipeline)
        return await self.books.load_checkpoints(pipeline)

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        return await self.books.list_checkpoints(pipeline)

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        await self._settle(pipeline)
        return await self.books.reset_checkpoints(pipeline, partition)

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await live_columns(self.books, table)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        return await self.books.read_dlq(pipeline.dlq_table, pipeline.name, where)
