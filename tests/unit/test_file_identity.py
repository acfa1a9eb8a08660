"""A file's position identifies its content: replaced files are read again from the start, appended
ones from where they stopped, and every line is read exactly once across restarts."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import FileSourceConfig
from conduitd.core.records import Chunk, Position, position_text
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.files import FileSource
from tests.unit.test_file_source import wait_for


def source(path: Path | str, *, once: bool = True, max_rows: int = 1000, **extra: object) -> FileSource:
    config = FileSourceConfig.model_validate({"name": "s", "type": "file", "path": str(path), **extra})
    return FileSource(config, once=once, max_rows=max_rows)


def lines(ids: list[int]) -> bytes:
    """Every line the same length (ids of six digits), so a same-size overwrite is easy to make."""
    return b"".join(orjson.dumps({"id": i, "pad": "x"}) + b"\n" for i in ids)


class Run:
    """Reads a file as successive `--once` runs would, committing each run's last position."""

    def __init__(self, path: Path, *, max_rows: int = 1000) -> None:
        self.path, self.max_rows = path, max_rows
        self.stored: dict[str, Position] = {}
        self.ids: list[int] = []

    async def once(self) -> list[Chunk]:
        files = self.path.parent / f"*{self.path.suffix}"  # a glob: the file may be gone for a while
        reading = source(files, max_rows=self.max_rows).chunks(FixedCheckpoints(self.stored), asyncio.Event())
        chunks = [c async for c in reading]
        key = str(self.path)
        if chunks:
            # the compare-and-set: a run's first chunk starts exactly at the committed position
            assert position_text(chunks[0].start) == position_text(self.stored.get(key))
            self.stored[key] = chunks[-1].end
        for chunk in chunks:
            assert not chunk.rejects, chunk.rejects
            self.ids += chunk.rows.column("id").to_pylist() if chunk.rows.num_rows else []
        return chunks


def overwrite(path: Path, data: bytes) -> None:
    """In place: the same inode, truncated and written again."""
    with path.open("r+b" if path.exists() else "wb") as handle:
        handle.truncate(0)
        handle.write(data)


def rename_over(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


async def test_a_same_size_overwrite_is_read_again(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    run = Run(file)
    await run.once()
    overwrite(file, lines([100003, 100004]))
    assert file.stat().st_size == len(lines([100001, 100002]))
    await run.once()
    assert run.ids == [100001, 100002, 100003, 100004]


async def test_a_larger_replacement_is_read_from_its_start(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    run = Run(file)
    await run.once()
    overwrite(file, lines([100003, 100004, 100005]))
    await run.once()
    assert run.ids == [100001, 100002, 100003, 100004, 100005]


async def test_a_file_renamed_over_the_old_name_is_read(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    run = Run(file)
    await run.once()
    rename_over(file, lines([100003]))
    await run.once()
    rename_over(file, lines([100004, 100005]))  # the same size as before: only the inode tells
    await run.once()
    assert run.ids == [100001, 100002, 100003, 100004, 100005]


async def test_appends_continue_also_below_the_fingerprint_window(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001]))  # far shorter than the fingerprinted 1 KiB
    run = Run(file)
    await run.once()
    for batch in ([100002], list(range(100003, 100100)), [100100]):
        with file.open("ab") as handle:
            handle.write(lines(batch))
        await run.once()
    assert run.ids == list(range(100001, 100101))


async def test_a_checkpoint_without_identity_is_taken_as_the_same_file(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001, 100002, 100003]))
    first_line = len(lines([100001]))
    stored = FixedCheckpoints({str(file): {"offset": first_line}})
    chunks = [c async for c in source(file).chunks(stored, asyncio.Event())]
    assert chunks[0].start == {"offset": first_line}
    assert [r["id"] for c in chunks for r in c.rows.to_pylist()] == [100002, 100003]
    assert set(chunks[-1].end) == {"offset", "inode", "fingerprint"}


async def test_positions_are_deterministic(tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_bytes(b"id,v\n" + b"".join(b"%d,x\n" % i for i in range(500)))
    first = [c.end async for c in source(file, max_rows=70).chunks(FixedCheckpoints(), asyncio.Event())]
    second = [c.end async for c in source(file, max_rows=70).chunks(FixedCheckpoints(), asyncio.Event())]
    assert [position_text(p) for p in first] == [position_text(p) for p in second]


async def test_a_replaced_csv_file_is_read_again_with_its_header(tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_bytes(b"id,name\n100001,a\n100002,b\n")
    run = Run(file)
    await run.once()
    overwrite(file, b"id,name\n100003,c\n100004,d\n")
    await run.once()
    assert run.ids == [100001, 100002, 100003, 100004]


async def test_a_replaced_parquet_file_is_read_again(tmp_path: Path) -> None:
    file = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3]}), file)
    run = Run(file)
    await run.once()
    await run.once()  # unchanged: nothing again
    temporary = tmp_path / "b.tmp"
    pq.write_table(pa.table({"id": [4, 5, 6]}), temporary)  # the same size and row count
    os.replace(temporary, file)
    await run.once()
    overwrite(file, _parquet_bytes(tmp_path, [7, 8, 9]))  # in place: the same inode, the same size
    await run.once()
    assert run.ids == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def _parquet_bytes(tmp_path: Path, ids: list[int]) -> bytes:
    scratch = tmp_path / "scratch.bin"
    pq.write_table(pa.table({"id": ids}), scratch)
    return scratch.read_bytes()


# -- every line exactly once, whatever happens to the file between runs ---------------------------

Operation = tuple[str, int]
operations = st.lists(st.tuples(st.sampled_from(["append", "overwrite", "rename", "remove"]),
                                st.integers(min_value=0, max_value=40)), min_size=1, max_size=8)


@settings(max_examples=60)
@given(operations, st.integers(min_value=1, max_value=7))
def test_every_line_is_read_exactly_once_through_appends_and_replacements(
        tmp_path_factory: pytest.TempPathFactory, steps: list[Operation], max_rows: int) -> None:
    file = tmp_path_factory.mktemp("ops") / "a.jsonl"
    run = Run(file, max_rows=max_rows)
    written: list[int] = []
    next_id = 100_000
    for kind, count in steps:
        ids = list(range(next_id, next_id + count))
        next_id += count
        if kind == "append":
            with file.open("ab") as handle:
                handle.write(lines(ids))
        elif kind == "overwrite":
            overwrite(file, lines(ids))
        elif kind == "rename":
            rename_over(file, lines(ids))
        else:
            file.unlink(missing_ok=True)
            ids = []
        written += ids
        asyncio.run(run.once())
    assert sorted(run.ids) == sorted(written) and len(run.ids) == len(set(run.ids))


# -- daemon mode ----------------------------------------------------------------------------------

async def test_the_daemon_notices_replacements_while_it_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    src = source(file, once=False, poll_interval=0.02)
    stop = asyncio.Event()
    seen: list[int] = []
    stored: dict[str, Position] = {}

    async def consume() -> None:
        async for chunk in src.chunks(FixedCheckpoints(), stop):
            assert position_text(chunk.start) == position_text(stored.get(chunk.partition))
            stored[chunk.partition] = chunk.end
            seen.extend(chunk.rows.column("id").to_pylist() if chunk.rows.num_rows else [])

    task = asyncio.create_task(consume())
    try:
        await wait_for(lambda: seen == [100001, 100002])
        overwrite(file, lines([100003, 100004]))  # same size
        await wait_for(lambda: seen[2:] == [100003, 100004])
        rename_over(file, lines([100005, 100006, 100007]))
        await wait_for(lambda: seen[4:] == [100005, 100006, 100007])
        with file.open("ab") as handle:
            handle.write(lines([100008]))
        await wait_for(lambda: seen[7:] == [100008])
        overwrite(file, lines([100009]))  # shrunk
        await wait_for(lambda: seen[8:] == [100009])
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert seen == list(range(100001, 100010))


async def test_a_file_removed_during_a_run_is_skipped_and_the_others_are_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, ids in (("a.jsonl", [1, 2, 3, 4]), ("b.jsonl", [5]), ("c.jsonl", [6])):
        (tmp_path / name).write_bytes(lines(ids))
    seen: list[int] = []
    with caplog.at_level(logging.WARNING):
        async for chunk in source(tmp_path, max_rows=2).chunks(FixedCheckpoints(), asyncio.Event()):
            seen += chunk.rows.column("id").to_pylist()
            for name in ("a.jsonl", "b.jsonl"):  # a is being read: it is read to its end all the same
                (tmp_path / name).unlink(missing_ok=True)
    assert seen == [1, 2, 3, 4, 6]
    assert any("b.jsonl was removed" in r.getMessage() for r in caplog.records)
