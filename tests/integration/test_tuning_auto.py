"""`batch.max_rows: auto` end to end: a JSON lines file into SQLite from a deliberately small
start; the batches grow, and every row arrives exactly once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from conduitd.config import BatchConfig, Config, FileSourceConfig, PipelineConfig, SqliteDestinationConfig
from conduitd.runtime.supervisor import Runtime
from conduitd.runtime.tuning import BatchSizer

ROWS = 60_000


def write_lines(path: Path, rows: int) -> None:
    with path.open("wb") as out:
        for i in range(1, rows + 1):
            out.write(orjson.dumps({"id": i, "name": f"n{i}", "amount": i % 1000 / 10}) + b"\n")


def config(tmp_path: Path, batch: dict[str, object]) -> Config:
    return Config(
        sources=[FileSourceConfig(name="f", type="file", path=str(tmp_path / "in.jsonl"), format="jsonl")],
        destinations=[SqliteDestinationConfig(name="db", type="sqlite", path=str(tmp_path / "out.db"))],
        resources=[PipelineConfig(name="orders", source="f", destination="db", table="orders",
                                  batch=BatchConfig.model_validate(batch))])


def table_ids(tmp_path: Path) -> list[int]:
    db = sqlite3.connect(tmp_path / "out.db")
    try:
        return [row[0] for row in db.execute("SELECT id FROM orders ORDER BY id")]
    finally:
        db.close()


async def run_once(tmp_path: Path, batch: dict[str, object]) -> tuple[Runtime, list[int]]:
    runtime = Runtime(config(tmp_path, batch), once=True)
    await runtime.run()
    [pipeline] = runtime.pipelines
    return runtime, [o.records for o in pipeline.sizer.recent]


async def test_auto_grows_from_a_small_start_and_loads_every_row_once(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", ROWS)
    # A generous target: 500-row SQLite commits take milliseconds, far below it, on any machine.
    runtime, sizes = await run_once(tmp_path, {"max_rows": "auto", "initial_rows": 500, "target_latency": "5s"})
    assert sizes[0] == 500
    assert max(sizes) > 4 * 500, sizes
    assert len(sizes) < ROWS // 500 // 4, sizes  # far fewer commits than the fixed start would make
    assert table_ids(tmp_path) == list(range(1, ROWS + 1))
    [status] = runtime.statuses()
    tuning = status.tuning
    assert tuning["adaptive"] is True and tuning["max_rows"] > 500
    assert tuning["batches"] == status.batches == len(sizes)
    assert status.rows_written == ROWS
    # A second run reads nothing more (the positions committed with the rows).
    _, again = await run_once(tmp_path, {"max_rows": "auto", "initial_rows": 500, "target_latency": "5s"})
    assert sum(again) == 0
    assert table_ids(tmp_path) == list(range(1, ROWS + 1))


async def test_auto_stays_within_its_limit(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", 20_000)
    _, sizes = await run_once(tmp_path, {"max_rows": "auto", "initial_rows": 500, "max_rows_limit": 3000,
                                         "target_latency": "5s"})
    assert max(sizes) == 3000, sizes
    assert table_ids(tmp_path) == list(range(1, 20_001))


async def test_a_fixed_size_is_kept(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", 5_000)
    runtime, sizes = await run_once(tmp_path, {"max_rows": 500})
    assert sizes == [500] * 10
    assert runtime.statuses()[0].tuning["adaptive"] is False
    assert table_ids(tmp_path) == list(range(1, 5_001))


async def test_advice_that_fails_never_fails_a_commit_and_status_shows_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The batch-size advice is made when /status is read, not in the commit path: a bug in it (an
    OverflowError once failed a pipeline right after its commit) shows in `tuning`, nothing more."""
    def broken(self: BatchSizer) -> dict[str, object]:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(BatchSizer, "report", broken)
    write_lines(tmp_path / "in.jsonl", 5_000)
    runtime, sizes = await run_once(tmp_path, {"max_rows": 500})
    assert sizes == [500] * 10
    assert table_ids(tmp_path) == list(range(1, 5_001))
    [status] = runtime.statuses()
    assert status.as_dict()["tuning"] == {"error": "OverflowError: cannot convert float infinity to integer"}
    assert "the batch-size advice failed" in caplog.text
