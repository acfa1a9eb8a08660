"""Reading JSON text files: which layout a file has, and the records of a JSON document as chunks.

A document's records are cut out of the file (`json_documents.split`), each made one line (the
line breaks inside a pretty-printed record are JSON whitespace: a valid record has none inside
its strings) and decoded together as JSON lines, so an array and the same records as JSON lines
give the same rows. Positions are byte offsets after each record, as for JSON lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

import numpy as np
import orjson
import pyarrow as pa

from conduitd.config import FileSourceConfig
from conduitd.core.bytescan import lf_offsets
from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Chunk, Position, Reject
from conduitd.core.timings import Timings
from conduitd.sources.file_identity import OpenFile, line_position
from conduitd.sources.json_documents import Document, Layout, Span, layout, split

_STEP = 64 * 1024
_PAYLOAD_LIMIT = 64 * 1024
"""Text that is not a record at all is kept in the DLQ up to this many bytes."""
_LINE_BREAKS = bytes.maketrans(b"\r\n", b"  ")


def first_line(file: OpenFile, size: int | None = None) -> bytes:
    """The file's first line with its newline (all of the first `size` bytes if it has none)."""
    end = file.size if size is None else size
    line = b""
    while len(line) < end:
        more = file.read(len(line), min(_STEP, end - len(line)))
        if not more:
            break
        newline = more.find(b"\n")
        if newline >= 0:
            return line + more[: newline + 1]
        line += more
    return line


def layout_of(file: OpenFile, size: int, encoding: str) -> Layout:
    """Is this JSON file JSON lines or one document? (`json_documents.layout`)"""
    head = first_line(file, size)
    sample = head + file.read(len(head), min(_STEP, size - len(head)))
    lines = sample.split(b"\n")
    if len(sample) < size or not sample.endswith(b"\n"):
        lines = lines[:-1] or lines  # the last may be cut short (a lone line is judged as it is)
    return layout(lines, encoding)


def read_document(file: OpenFile, size: int) -> tuple[bytes, Document]:
    data = file.read(0, size)
    return data, split(data)


def decode_lines_with_offsets(block: bytes, path: str, position_at: Callable[[int], Position], base: int, *,
                              max_record_bytes: int, encoding: str) -> tuple[pa.Table, list[Reject], np.ndarray]:
    """Decode a block of JSON lines and say, per row, the file offset just after its line."""
    newlines = lf_offsets(block)  # one scan for both
    rows, rejects, kept = decode_jsonl_lines(block, path, position_at, max_record_bytes=max_record_bytes,
                                             encoding=encoding, newlines=newlines)
    ends = newlines + 1 + base
    if not block.endswith(b"\n"):
        ends = np.append(ends, base + len(block))
    return rows, rejects, ends if kept is None else ends[kept]


class DocumentReader:
    """The records of one JSON document file from a byte offset on, as chunks of at most
    `max_rows` records and about `read_size` bytes."""

    def __init__(self, file: OpenFile, size: int, data: bytes, document: Document, config: FileSourceConfig,
                 max_rows: int) -> None:
        self.file, self.size, self.data, self.document = file, size, data, document
        self.config, self.max_rows = config, max_rows

    async def chunks(self, position: Position, offset: int) -> AsyncGenerator[Chunk, None]:
        spans = [s for s in self.document.spans if s.start >= offset]
        groups = self._groups(spans)
        if not groups and offset < self.size:
            groups = [[]]  # only whitespace or the closing bracket is left: move the position past it
        start = position
        for index, group in enumerate(groups):
            end_offset = self.size if index == len(groups) - 1 else group[-1].end
            timings = Timings()
            with timings.stage("decode"):
                rows, rejects, row_offsets = await asyncio.to_thread(self._decode, group)
                end = await asyncio.to_thread(line_position, self.file, end_offset)
            nbytes = sum(s.end - s.start for s in group)
            yield Chunk(self.file.path, start, end, rows, tuple(rejects), nbytes, timings=timings,
                        row_offsets=row_offsets)
            start = end

    def _groups(self, spans: list[Span]) -> list[list[Span]]:
        groups: list[list[Span]] = []
        current: list[Span] = []
        size = 0
        for span in spans:
            if current and (len(current) >= self.max_rows or size + span.end - span.start > self.config.read_size):
                groups.append(current)
                current, size = [], 0
            current.append(span)
            size += span.end - span.start
        if current:
            groups.append(current)
        return groups

    def _decode(self, group: list[Span]) -> tuple[pa.Table, list[Reject], np.ndarray]:
        path, encoding = self.file.path, self.config.encoding
        # Elements that are not objects are rejected here, never handed to pyarrow: its JSON reader
        # crashes the process on a block starting with a `null` line (pyarrow 26).
        group = [s if s.problem is not None or self.data[s.start] == ord("{") else
                 Span(s.start, s.end, _not_an_object(self.data[s.start:s.end], encoding)) for s in group]
        records = [s for s in group if s.problem is None]
        rejects = [Reject(path, {"offset": s.end}, s.problem or "",
                          self._text(s.start, min(s.end, s.start + _PAYLOAD_LIMIT)))
                   for s in group if s.problem is not None]
        if not records:
            return pa.table({}), rejects, np.empty(0, dtype=np.int64)
        lines = [self.data[s.start:s.end].translate(_LINE_BREAKS) for s in records]
        block = b"\n".join(lines) + b"\n"
        block_ends = np.cumsum([len(line) + 1 for line in lines])
        record_at = {int(e): i for i, e in enumerate(block_ends.tolist())}
        ends = np.array([s.end for s in records], dtype=np.int64)

        def position_at(relative: int) -> Position:
            return {"offset": int(ends[record_at[relative]]) if relative in record_at else records[-1].end}

        rows, decode_rejects, kept = decode_jsonl_lines(block, path, position_at, len(lines),
                                                        max_record_bytes=self.config.max_record_bytes,
                                                        encoding=encoding)
        by_end = {s.end: s for s in records}
        for reject in decode_rejects:
            span = by_end.get(int(reject.position["offset"]))
            rejects.append(self._original(reject, span) if span is not None else reject)
        rejects.sort(key=lambda r: int(r.position["offset"]))
        return rows, rejects, ends if kept is None else ends[kept]

    def _original(self, reject: Reject, span: Span) -> Reject:
        """The decoder saw the record with its line breaks made spaces: show the DLQ the record as
        it is in the file (unless the decoder shortened it)."""
        raw = self.data[span.start:span.end]
        flattened = raw.translate(_LINE_BREAKS)
        seen_by_decoder = {self._decode_text(flattened, e) for e in ("utf-8", self.config.encoding)}
        if raw == flattened or reject.payload not in seen_by_decoder:
            return reject
        return replace(reject, payload=self._text(span.start, span.end))

    def _text(self, start: int, end: int) -> str:
        return self._decode_text(self.data[start:end], self.config.encoding)

    @staticmethod
    def _decode_text(raw: bytes, encoding: str) -> str:
        try:
            return raw.decode(encoding, errors="backslashreplace")
        except LookupError:
            return raw.decode("utf-8", errors="backslashreplace")


def _not_an_object(raw: bytes, encoding: str) -> str:
    """Why an element that does not start with `{` is not a record (worded as the JSON lines decoder words it)."""
    try:
        value = orjson.loads(raw.decode(encoding, errors="strict"))
    except (orjson.JSONDecodeError, UnicodeDecodeError, LookupError) as exc:
        return f"not valid JSON: {exc}"
    return f"JSON value is a {type(value).__name__}, not an object"
