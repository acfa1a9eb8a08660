"""A sampler that reads something every `every` seconds while an `async with` block runs, and
once more as the block ends (what a path did in its last moments counts too)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class Sampler:
    """Subclasses read in `sample`; `begin` and `end` run before the first read and after the
    last one."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        """Before the first read."""

    async def sample(self) -> None:
        raise NotImplementedError

    async def end(self) -> None:
        """After the last read."""

    async def _run(self) -> None:
        while True:
            await self.sample()
            if self._done.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), self.every)

    async def __aenter__(self) -> Self:
        await self.begin()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._done.set()
        if self._task is not None:
            await self._task
        await self.end()
