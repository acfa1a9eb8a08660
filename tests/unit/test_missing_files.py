"""A configured file that does not exist: a config error for batch runs and checks, a reported
problem (not a crash) for the daemon, which reads the file once it appears."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conduitd.errors import ConfigError
from conduitd.sources import check_source
from conduitd.sources.base import FixedCheckpoints
from tests.unit.test_file_source import jsonl, source, wait_for


async def test_a_missing_file_is_a_config_error_under_once_and_in_checks(tmp_path: Path) -> None:
    missing = tmp_path / "orders.jsonl"
    with pytest.raises(ConfigError, match="does not exist"):
        [c async for c in source(missing).chunks(FixedCheckpoints(), asyncio.Event())]
    with pytest.raises(ConfigError, match=r"orders\.jsonl"):
        await check_source(source(missing).config)


async def test_a_glob_or_a_directory_matching_nothing_is_fine(tmp_path: Path) -> None:
    assert [c async for c in source(tmp_path / "*.jsonl").chunks(FixedCheckpoints(), asyncio.Event())] == []
    assert [c async for c in source(tmp_path).chunks(FixedCheckpoints(), asyncio.Event())] == []


async def test_the_daemon_reports_a_missing_file_and_reads_it_once_it_appears(tmp_path: Path) -> None:
    file = tmp_path / "orders.jsonl"
    src = source(file, once=False, poll_interval=0.02)
    stop = asyncio.Event()
    seen: list[int] = []

    async def consume() -> None:
        async for chunk in src.chunks(FixedCheckpoints(), stop):
            seen.extend(chunk.rows.column("id").to_pylist())

    task = asyncio.create_task(consume())
    try:
        await wait_for(lambda: src.problem() is not None)
        assert "orders.jsonl" in str(src.problem())
        file.write_bytes(jsonl([{"id": 1}]))
        await wait_for(lambda: seen == [1])
        assert src.problem() is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
