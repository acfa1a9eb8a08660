"""The engine as the destination's async code calls it: each call in a worker thread, one at a
time, its driver errors translated (`errors.translate`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

from conduitd.destinations.clickhouse.engine import Engine
from conduitd.destinations.clickhouse.errors import translate

T = TypeVar("T")


class Client:
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()

    async def _call(self, work: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            try:
                return await asyncio.to_thread(work, *args)
            except Exception as exc:  # translated: driver errors never leave
                translated = translate(exc)
                if translated is exc:
                    raise
                raise translated from None

    async def command(self, sql: str) -> None:
        await self._call(self.engine.command, sql)

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return await self._call(self.engine.rows, sql)

    async def insert(self, table: str, data: pa.Table) -> None:
        await self._call(self.engine.insert, table, data)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.close)
