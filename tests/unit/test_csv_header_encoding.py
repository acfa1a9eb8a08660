"""A CSV header with bytes that are not valid in the configured encoding names no column: no
name is made up from `\\xff` escapes; every row of the file goes to the DLQ with the reason, at
its own position, as a row with such bytes does, and nothing is dropped unseen (issue 8, item 2)."""

from __future__ import annotations

import asyncio
import codecs
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import FileSourceConfig
from conduitd.core.records import Chunk
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.files import FileSource


def read_all(path: Path, encoding: str, max_rows: int = 3) -> list[Chunk]:
    config = FileSourceConfig.model_validate({"name": "s", "type": "file", "path": str(path), "encoding": encoding})

    async def chunks() -> list[Chunk]:
        source = FileSource(config, once=True, max_rows=max_rows)
        return [c async for c in source.chunks(FixedCheckpoints(), asyncio.Event())]
    return asyncio.run(chunks())


NAMES = st.text(st.sampled_from("abcxyz_"), min_size=1, max_size=6)
CELLS = st.text(st.sampled_from("0123456789abc "), max_size=6)
INVALID = {"utf-8": [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"], "ascii": [b"\x80", b"\xff", b"\xe9"]}


@settings(max_examples=60)
@given(encoding=st.sampled_from(sorted(INVALID)), names=st.lists(NAMES, min_size=1, max_size=4),
       bad_at=st.integers(0, 3), data=st.data(),
       rows=st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=8), blank_after=st.integers(0, 8))
def test_every_row_of_a_file_with_an_undecodable_header_is_dead_lettered(
        tmp_path: Path, encoding: str, names: list[str], bad_at: int, data: st.DataObject,
        rows: list[list[str]], blank_after: int) -> None:
    bad = data.draw(st.sampled_from(INVALID[encoding]))
    header = [name.encode() for name in names]
    index = min(bad_at, len(header) - 1)
    header[index] = header[index] + bad
    lines = [",".join(cells).encode() + b"\n" for cells in rows]
    lines.insert(min(blank_after, len(lines)), b"\n")  # a blank line is no row
    path = tmp_path / "a.csv"
    path.write_bytes(b",".join(header) + b"\n" + b"".join(lines))
    chunks = read_all(path, encoding)
    assert all(c.rows.num_rows == 0 and c.rows.num_columns == 0 for c in chunks), "a column was named"
    rejects = [r for c in chunks for r in c.rejects]
    records = [line.rstrip(b"\n") for line in lines if line.strip(b"\r\n")]
    assert [r.payload for r in rejects] == [codecs.decode(record, encoding) for record in records]
    assert all("CSV header (line 1) is not valid" in r.reason and "no row of this file is loaded" in r.reason
               for r in rejects)
    ends = [len(b",".join(header)) + 1 + sum(len(x) for x in lines[:i + 1]) for i, line in enumerate(lines)
            if line.strip(b"\r\n")]
    assert [r.position["offset"] for r in rejects] == ends  # each row at the end of its own line
    assert chunks and chunks[-1].end["offset"] == path.stat().st_size  # read to its end: not again


def test_a_valid_latin1_header_still_names_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("id,caf\xe9\n1,cr\xe8me\n".encode("latin-1"))
    chunks = read_all(path, "latin-1")
    assert [r for c in chunks for r in c.rows.to_pylist()] == [{"id": 1, "café": "crème"}]
