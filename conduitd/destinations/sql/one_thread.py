"""A blocking DB-API connection used from asyncio: every call runs on the connection's own
worker thread (sqlite3 objects are thread-bound; a DuckDB connection serves one caller at a
time). The SQLite and DuckDB drivers build on it and translate their errors in `call`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class OneThread(Generic[C]):
    """`start` before use, `stop` after (harmless twice); `store` names the destination in errors."""

    store = "SQL"

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._conn: C | None = None

    def start(self) -> None:
        if self._executor is not None:
            raise RuntimeError(f"the {self.store} destination is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"conduitd-{self.store.lower()}")

    async def stop(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            await self.call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None

    @property
    def conn(self) -> C:
        if self._conn is None:
            raise RuntimeError(f"the {self.store} destination is not open")
        return self._conn

    @conn.setter
    def conn(self, conn: C) -> None:
        self._conn = conn

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the connection's thread (drivers override this to translate errors)."""
        return await self._on_thread(fn, *args)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError(f"the {self.store} destination is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
