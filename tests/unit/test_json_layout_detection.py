"""Where a JSON file's text starts does not change how it is read (issue 8, D6): blank lines or
whitespace before a document, a UTF-8 BOM before JSON lines; and a file whose lines are each a
JSON array (`jq -c` output of arrays) is a stream of documents, read as the arrays' records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.records import Chunk
from conduitd.sources.base import FixedCheckpoints
from tests.unit.test_file_source import source

BOM = b"\xef\xbb\xbf"
RECORDS = [{"id": i, "name": f"n{i}"} for i in range(5)]


async def read(path: Path, **extra: Any) -> list[Chunk]:
    return [c async for c in source(path, **extra).chunks(FixedCheckpoints(None), asyncio.Event())]


def outcome(path: Path, **extra: Any) -> tuple[list[dict[str, Any]], list[str]]:
    chunks = asyncio.run(read(path, **extra))
    return [r for c in chunks for r in c.rows.to_pylist()], [r.reason for c in chunks for r in c.rejects]


def pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


@pytest.mark.parametrize("prefix", [b"\n", b"\n\n", b"  \n\t\n", b"\r\n", b"   ", BOM + b"\n", BOM])
def test_blank_lines_or_whitespace_before_a_document_do_not_make_it_json_lines(tmp_path: Path,
                                                                               prefix: bytes) -> None:
    array, single = tmp_path / "array.json", tmp_path / "single.json"
    array.write_bytes(prefix + pretty(RECORDS))
    single.write_bytes(prefix + pretty(RECORDS[0]) + b"\n")
    assert outcome(array) == (RECORDS, [])
    assert outcome(single) == (RECORDS[:1], [])


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "utf_8"])
def test_a_bom_before_json_lines_is_skipped(tmp_path: Path, encoding: str) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(BOM + b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    chunks = asyncio.run(read(file, encoding=encoding))
    assert [r for c in chunks for r in c.rows.to_pylist()] == RECORDS
    assert [r for c in chunks for r in c.rejects] == []
    assert chunks[-1].end["offset"] == file.stat().st_size


def test_a_bom_later_in_the_file_is_left_to_the_decoder(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(orjson.dumps(RECORDS[0]) + b"\n" + BOM + orjson.dumps(RECORDS[1]) + b"\n")
    rows, reasons = outcome(file)
    assert rows[:1] == RECORDS[:1] and len(rows) + len(reasons) == 2  # the source skips nothing there


@pytest.mark.parametrize("lines", [1, 2, 3])
def test_lines_that_are_each_an_array_of_records_are_read_as_records(tmp_path: Path, lines: int) -> None:
    file = tmp_path / "jq.json"
    file.write_bytes(b"".join(orjson.dumps(RECORDS) + b"\n" for _ in range(lines)))
    assert outcome(file) == (RECORDS * lines, [])


def test_json_lines_with_an_array_among_objects_stay_json_lines(tmp_path: Path) -> None:
    file = tmp_path / "mixed.jsonl"
    file.write_bytes(orjson.dumps(RECORDS[0]) + b"\n" + orjson.dumps(RECORDS[1:3]) + b"\n"
                     + orjson.dumps(RECORDS[3]) + b"\n")
    rows, reasons = outcome(file)
    assert rows == [RECORDS[0], RECORDS[3]] and len(reasons) == 1


records = st.lists(st.fixed_dictionaries({"id": st.integers(min_value=0, max_value=10**6)},
                                         optional={"s": st.text(max_size=8)}), min_size=1, max_size=8)
prefixes = st.tuples(st.booleans(), st.lists(st.sampled_from([b"\n", b"\r\n", b" ", b"\t"]), max_size=4))


@settings(max_examples=60)
@given(values=records, prefix=prefixes, shape=st.sampled_from(["lines", "pretty", "compact", "jq", "jq -c"]))
def test_every_record_is_a_row_or_a_reject_whatever_comes_before_it(
        tmp_path_factory: pytest.TempPathFactory, values: list[dict[str, Any]], prefix: tuple[bool, list[bytes]],
        shape: str) -> None:
    bom, blanks = prefix
    body = {
        "lines": b"".join(orjson.dumps(v) + b"\n" for v in values),
        "pretty": pretty(values),
        "compact": orjson.dumps(values),
        "jq": b"".join(pretty(v) + b"\n" for v in values),
        "jq -c": b"".join(orjson.dumps(values[i:i + 2]) + b"\n" for i in range(0, len(values), 2)),
    }[shape]
    if shape == "lines" and blanks:
        blanks = [b"\n"]  # whitespace then a JSON line is one line with leading whitespace: still fine
    file = tmp_path_factory.mktemp("prefix") / "data.json"
    file.write_bytes((BOM if bom else b"") + b"".join(blanks) + body)
    rows, reasons = outcome(file)
    assert [{k: v for k, v in r.items() if v is not None} for r in rows] == values and reasons == []
