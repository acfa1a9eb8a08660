"""The file source: positions chain exactly, restarts resume mid-file, bad lines become rejects."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from conduitd.config import FileSourceConfig
from conduitd.core.records import Chunk, Position
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.files import FileSource


def source(path: Path | str, *, once: bool = True, max_rows: int = 1000, **extra: object) -> FileSource:
    config = FileSourceConfig.model_validate({"name": "s", "type": "file", "path": str(path), **extra})
    return FileSource(config, once=once, max_rows=max_rows)


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


async def read_all(src: FileSource, positions: dict[str, Position] | None = None) -> list[Chunk]:
    return [c async for c in src.chunks(FixedCheckpoints(positions), asyncio.Event())]


async def test_chunks_chain_positions_and_respect_max_rows(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(jsonl([{"id": i} for i in range(25)]))
    chunks = await read_all(source(file, max_rows=10))
    assert [c.rows.num_rows for c in chunks] == [10, 10, 5]
    assert chunks[0].start is None
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end
    assert chunks[-1].end["offset"] == file.stat().st_size
    assert [r["id"] for c in chunks for r in c.rows.to_pylist()] == list(range(25))


async def test_restart_resumes_after_the_stored_position(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(jsonl([{"id": i} for i in range(20)]))
    first = await read_all(source(file, max_rows=7))
    resumed = await read_all(source(file, max_rows=7), {str(file): first[0].end})
    assert resumed[0].start == first[0].end
    assert [r["id"] for c in resumed for r in c.rows.to_pylist()] == list(range(7, 20))
    assert await read_all(source(file), {str(file): first[-1].end}) == []


async def test_malformed_lines_are_rejects_with_their_position(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    good = orjson.dumps({"id": 1}) + b"\n"
    file.write_bytes(good + b"not json\n" + b"[1,2]\n" + b'{"id": 2, "name": "\xff"}\n' + good)
    (chunk,) = await read_all(source(file))
    assert chunk.rows.column("id").to_pylist() == [1, 1]
    reasons = [r.reason for r in chunk.rejects]
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1] == "JSON value is a list, not an object"
    assert "UTF-8" in reasons[2]
    assert [r.payload for r in chunk.rejects[:2]] == ["not json", "[1,2]"]
    assert chunk.rejects[0].position == {"offset": len(good) + len(b"not json\n")}


async def test_once_takes_an_unterminated_last_line(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(b'{"id": 1}\n{"id": 2}')
    (chunk,) = await read_all(source(file))
    assert chunk.rows.column("id").to_pylist() == [1, 2]


async def test_daemon_picks_up_appended_lines_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl([{"id": 1}]))
    src = source(tmp_path / "*.jsonl", once=False, poll_interval=0.02)
    stop = asyncio.Event()
    seen: list[int] = []

    async def consume() -> None:
        async for chunk in src.chunks(FixedCheckpoints(), stop):
            seen.extend(chunk.rows.column("id").to_pylist())

    task = asyncio.create_task(consume())
    await wait_for(lambda: seen == [1])
    with (tmp_path / "a.jsonl").open("ab") as handle:
        handle.write(b'{"id": 2}\n{"id": 3')  # the last line is still being written
    await wait_for(lambda: seen == [1, 2])
    with (tmp_path / "a.jsonl").open("ab") as handle:
        handle.write(b"}\n")
    (tmp_path / "b.jsonl").write_bytes(jsonl([{"id": 4}]))
    await wait_for(lambda: seen == [1, 2, 3, 4])
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_daemon_takes_an_unterminated_line_once_the_file_stops_growing(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1}\n{"id": 2}')
    src = source(tmp_path / "a.jsonl", once=False, poll_interval=0.02, partial_line_timeout=0.1)
    stop = asyncio.Event()
    seen: list[int] = []

    async def consume() -> None:
        async for chunk in src.chunks(FixedCheckpoints(), stop):
            seen.extend(chunk.rows.column("id").to_pylist())

    task = asyncio.create_task(consume())
    await wait_for(lambda: seen == [1, 2])
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_csv_with_header_resume_and_a_bad_row(tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_bytes(b"id,name\n1,a\n2,b,extra\n3,c\n4,d\n")
    chunks = await read_all(source(file, max_rows=2))
    rows = [r for c in chunks for r in c.rows.to_pylist()]
    assert rows == [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}, {"id": 4, "name": "d"}]
    rejects = [r for c in chunks for r in c.rejects]
    assert [r.payload for r in rejects] == ["2,b,extra"]
    resumed = await read_all(source(file, max_rows=2), {str(file): chunks[0].end})
    assert [r for c in resumed for r in c.rows.to_pylist()] == [{"id": 3, "name": "c"}, {"id": 4, "name": "d"}]


async def test_parquet_rows_and_resume(tmp_path: Path) -> None:
    file = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": list(range(10)), "v": [f"x{i}" for i in range(10)]}), file, row_group_size=4)
    chunks = await read_all(source(file, max_rows=3))
    assert [r["id"] for c in chunks for r in c.rows.to_pylist()] == list(range(10))
    assert chunks[-1].end["row"] == 10
    resumed = await read_all(source(file, max_rows=3), {str(file): {"row": 5}})
    assert [r["id"] for c in resumed for r in c.rows.to_pylist()] == [5, 6, 7, 8, 9]


async def test_a_file_that_shrank_is_read_again_from_the_start(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(jsonl([{"id": 9}]))
    (chunk,) = await read_all(source(file), {str(file): {"offset": 10_000}})
    assert chunk.start == {"offset": 10_000}  # the compare-and-set still checks the stored position
    assert chunk.rows.column("id").to_pylist() == [9]


async def test_directory_lists_matching_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (tmp_path / name).write_bytes(jsonl([{"id": 1}]))
    assert [Path(p).name for p in source(tmp_path).discover()] == ["a.jsonl", "b.jsonl"]


async def wait_for(condition: object, within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_big_integers_beside_fractions_stay_exact(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(b'{"n": 9007199254740993}\n{"n": 2.5}\n{"n": 1}\n')
    (chunk,) = await read_all(source(file))
    from decimal import Decimal

    assert chunk.rows.column("n").to_pylist() == [Decimal("9007199254740993"), Decimal("2.5"), Decimal("1")]
