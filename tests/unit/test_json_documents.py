"""JSON files that are one document (an array, compact or pretty-printed, a pretty object, a `jq`
stream) are read as their records, the same rows as the same records in JSON lines."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.records import Chunk, Position, position_text
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.json_documents import split
from tests.unit.test_file_source import source, wait_for

texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # with quotes, brackets, commas, newlines
records = st.lists(st.fixed_dictionaries({}, optional={
    "id": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "name": texts,
    "ratio": st.floats(allow_nan=False, allow_infinity=False),
    "ok": st.booleans(),
    "tags": st.lists(st.integers(min_value=-1000, max_value=1000), max_size=3),
    "inner": st.fixed_dictionaries({"x": texts}),
    'we"ird, ]key': st.none() | st.integers(min_value=0, max_value=9),
}), max_size=12)


async def read(path: Path, stored: dict[str, Position] | None = None, **extra: Any) -> list[Chunk]:
    return [c async for c in source(path, **extra).chunks(FixedCheckpoints(stored), asyncio.Event())]


def rows_of(chunks: list[Chunk]) -> list[dict[str, Any]]:
    return [r for c in chunks for r in c.rows.to_pylist()]


def layouts(values: list[Any]) -> dict[str, bytes]:
    return {
        "lines": b"".join(orjson.dumps(v) + b"\n" for v in values),
        "compact array": orjson.dumps(values),
        "compact array with newline": orjson.dumps(values) + b"\n",
        "pretty array": json.dumps(values, indent=2, ensure_ascii=False).encode(),
        "pretty array, tabs and CRLF": json.dumps(values, indent="\t").replace("\n", "\r\n").encode(),
        "jq stream": b"".join(json.dumps(v, indent=2).encode() + b"\n" for v in values),
    }


@settings(max_examples=60)
@given(records)
def test_arrays_pretty_arrays_and_json_lines_give_the_same_rows(tmp_path_factory: pytest.TempPathFactory,
                                                                values: list[dict[str, Any]]) -> None:
    folder = tmp_path_factory.mktemp("layouts")
    results = {}
    for name, data in layouts(values).items():
        file = folder / f"{name}.json"
        file.write_bytes(data)
        chunks = asyncio.run(read(file))
        rejects = [r for c in chunks for r in c.rejects]
        table = pa.concat_tables([c.rows for c in chunks if c.rows.num_columns]) if any(
            c.rows.num_columns for c in chunks) else pa.table({})
        results[name] = (table.schema, table.to_pylist(), [r.reason for r in rejects])
        if chunks:
            assert chunks[-1].end["offset"] == len(data)  # everything was taken
    expected = next(iter(results.values()))
    for name, got in results.items():
        assert got == expected, name


@settings(max_examples=60)
@given(st.lists(st.one_of(st.fixed_dictionaries({"id": st.integers(0, 99)}), st.integers(), texts, st.none(),
                          st.lists(st.integers(), max_size=2), st.booleans()), max_size=10),
       st.integers(min_value=1, max_value=4))
def test_every_element_is_a_row_or_a_reject_with_a_reason(tmp_path_factory: pytest.TempPathFactory,
                                                          values: list[Any], max_rows: int) -> None:
    file = tmp_path_factory.mktemp("mixed") / "a.json"
    file.write_bytes(json.dumps(values, indent=1).encode())
    chunks = asyncio.run(read(file, max_rows=max_rows))
    rows = rows_of(chunks)
    rejects = [r for c in chunks for r in c.rejects]
    objects = [v for v in values if isinstance(v, dict)]
    assert rows == objects
    assert len(rejects) == len(values) - len(objects)
    assert all("not an object" in r.reason for r in rejects)
    # the DLQ payload is the element as it is in the file, and its position follows it
    text = file.read_bytes()
    for reject in rejects:
        offset = reject.position["offset"]
        assert text[:offset].decode().endswith(reject.payload)
    for before, after in itertools.pairwise(chunks):
        assert position_text(after.start) == position_text(before.end)


async def test_resuming_mid_array_reads_the_rest(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_bytes(json.dumps([{"id": i} for i in range(10)], indent=2).encode())
    chunks = await read(file, max_rows=3)
    assert [c.rows.num_rows for c in chunks] == [3, 3, 3, 1]
    resumed = await read(file, {str(file): chunks[1].end}, max_rows=3)
    assert resumed[0].start == chunks[1].end
    assert [r["id"] for r in rows_of(resumed)] == list(range(6, 10))
    assert await read(file, {str(file): chunks[-1].end}) == []
    assert chunks[0].row_offsets is not None and len(chunks[0].row_offsets) == 3


async def test_a_single_pretty_object_is_one_record(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_bytes(json.dumps({"id": 1, "address": {"city": "Oslo", "lines": ["a", "b"]}}, indent=4).encode())
    (chunk,) = await read(file)
    assert chunk.rows.to_pylist()[0]["id"] == 1 and not chunk.rejects


async def test_json_lines_starting_with_a_list_line_stay_json_lines(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(b'[1, 2]\n{"id": 1}\n{"id": 2}\n')
    (chunk,) = await read(file)
    assert chunk.rows.column("id").to_pylist() == [1, 2]
    assert [r.reason for r in chunk.rejects] == ["JSON value is a list, not an object"]


async def test_an_array_element_over_max_record_bytes_goes_to_the_dlq(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_bytes(json.dumps([{"id": 1}, {"id": 2, "blob": "x" * 5000}, {"id": 3}], indent=2).encode())
    (chunk,) = await read(file, max_record_bytes=1000)
    assert chunk.rows.column("id").to_pylist() == [1, 3]
    (reject,) = chunk.rejects
    assert "1000" in reject.reason or "max_record_bytes" in reject.reason


async def test_a_broken_document_keeps_its_good_records(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_bytes(b'[{"id": 1}, {"id": 2}, {"id": oops}, {"id": 4}, {"id"')
    (chunk,) = await read(file)
    assert chunk.rows.column("id").to_pylist() == [1, 2, 4]
    assert len(chunk.rejects) == 2 and chunk.end["offset"] == file.stat().st_size


async def test_the_daemon_waits_for_an_array_being_written(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_bytes(b'[\n  {"id": 1},\n  {"id": 2},\n')
    src = source(file, once=False, poll_interval=0.02, partial_line_timeout=60)
    stop = asyncio.Event()
    seen: list[Chunk] = []

    async def consume() -> None:
        async for chunk in src.chunks(FixedCheckpoints(), stop):
            seen.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    assert seen == []  # incomplete: it may still be being written
    with file.open("ab") as handle:
        handle.write(b'  {"id": 3}\n]\n')
    await wait_for(lambda: [r["id"] for r in rows_of(seen)] == [1, 2, 3])
    stop.set()
    await asyncio.wait_for(task, 2)
    assert not any(c.rejects for c in seen)


def test_split_finds_elements_around_strings_with_brackets_and_escapes() -> None:
    data = b'[{"a": "x,]}\\"y"}, {"b": "\\\\"}, [1, 2]]'
    spans = split(data).spans
    assert [data[s.start:s.end] for s in spans] == [b'{"a": "x,]}\\"y"}', b'{"b": "\\\\"}', b"[1, 2]"]


@pytest.mark.parametrize("first", [b'{"id": 1', b"[", b"{", b'{"id": 1}}'])
async def test_json_lines_with_a_broken_first_line_stay_json_lines(tmp_path: Path, first: bytes) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(first + b'\n{"id": 2}\n{"id": 3}\n')
    chunks = await read(file)
    assert [r["id"] for r in rows_of(chunks)] == [2, 3]
    assert len([r for c in chunks for r in c.rejects]) == 1
