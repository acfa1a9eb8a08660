"""What the contract kits share: the per-test directory and a bounded event loop per test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


class Contract:
    timeout = 120.0
    """Seconds a test may take before it fails (a guard against a hang, not a measure)."""

    tmp_path: Path
    """A fresh directory for each test."""

    @pytest.fixture(autouse=True)
    def _contract_tmp_path(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(self.timeout):
                return await work()
        return asyncio.run(bounded())
