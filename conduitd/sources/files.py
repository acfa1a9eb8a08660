"""The file source: JSON lines, CSV or Parquet files in a directory or matching a glob.

A partition is one file (its path as matched); the position is ``{"offset": N}``, the byte after
the last complete line read (CSV, JSON lines), or ``{"row": N}`` for Parquet. In daemon mode new
files and lines appended to existing files are picked up every `poll_interval`; a last line
without its newline is held back until the file has stopped growing for `partial_line_timeout`,
since it may still be being written. A file that shrinks below its position was replaced: it is
read again from the start, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import glob
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conduitd.config import FileSourceConfig
from conduitd.decode import decode_csv, decode_jsonl_lines
from conduitd.records import Chunk, Position, Reject
from conduitd.sources.base import Checkpoints
from conduitd.telemetry import Timings

log = logging.getLogger(__name__)

Format = Literal["jsonl", "csv", "parquet"]
_EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


class FileSource:
    """See the module docstring."""

    def __init__(self, config: FileSourceConfig, *, once: bool, max_rows: int) -> None:
        self.config = config
        self.once = once
        self.max_rows = max_rows
        self._offsets: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._held_tail: dict[str, tuple[int, float]] = {}

    epoch = 0

    def lag(self) -> dict[str, dict[str, float]]:
        return {p: {"bytes": max(0, self._sizes.get(p, 0) - o)} for p, o in self._offsets.items()}

    def problem(self) -> str | None:
        return None

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        return None

    async def close(self) -> None:
        return None

    async def resync(self) -> bool:
        return False  # two writers of one file pipeline is a misconfiguration: stop

    def discover(self) -> list[str]:
        """Files to read, in name order."""
        path = self.config.path
        if os.path.isdir(path):
            found = [str(Path(path) / n) for n in os.listdir(path)]
            found = [f for f in found if self._format_of(f, strict=True) is not None]
        elif glob.has_magic(path):
            found = glob.glob(path)
        else:
            found = [path] if os.path.exists(path) else []
        return sorted(f for f in found if os.path.isfile(f))

    def _sizes_now(self) -> dict[str, int]:
        return {f: os.path.getsize(f) for f in self.discover()}

    def _format_of(self, path: str, strict: bool = False) -> Format | None:
        by_extension = _EXTENSIONS.get(Path(path).suffix.lower())
        if self.config.format is None:
            return by_extension
        if strict and by_extension != self.config.format:
            return None
        return self.config.format

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        stored = await checkpoints.committed()
        limit: dict[str, int] | None = None
        if self.once:
            limit = await asyncio.to_thread(self._sizes_now)
        while not stop.is_set():
            files = list(limit) if limit is not None else self.discover()
            produced = False
            for path in files:
                reader = self._read(path, stored.get(path), limit.get(path) if limit else None)
                async for chunk in reader:
                    stored[path] = chunk.end
                    produced = True
                    yield chunk
                    if stop.is_set():
                        return
            if self.once:
                return
            if not produced:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_interval)

    async def _read(self, path: str, position: Position, limit: int | None) -> AsyncIterator[Chunk]:
        fmt = self._format_of(path)
        if fmt is None:
            log.warning("skipping %s: unknown file format (set 'format' on the source)", path)
            return
        if fmt == "parquet":
            async for chunk in self._read_parquet(path, position):
                yield chunk
            return
        offset = int(position["offset"]) if position else 0
        size = limit if limit is not None else await asyncio.to_thread(os.path.getsize, path)
        self._sizes[path] = size
        if size < offset:
            log.warning("%s shrank below its committed position (%d < %d): reading it again from the start",
                        path, size, offset)
            offset = 0
        self._offsets[path] = offset
        header: list[str] | None = None
        if fmt == "csv":
            header, header_end = await asyncio.to_thread(self._csv_header, path, self.config.csv_delimiter)
            if header is None:
                return
            offset = max(offset, header_end)
        start = position
        while offset < size:
            timings = Timings()
            with timings.stage("poll"):
                block = await asyncio.to_thread(self._read_block, path, offset, size)
            if not block:
                return
            end_offset = offset + len(block)

            def position_at(relative: int, base: int = offset) -> Position:
                return {"offset": base + relative}

            with timings.stage("decode"):
                if fmt == "csv":
                    assert header is not None
                    rows, rejects = await asyncio.to_thread(
                        decode_csv, block, header, self.config.csv_delimiter, path, position_at)
                    row_offsets = None
                else:
                    rows, rejects, row_offsets = await asyncio.to_thread(_decode_jsonl_with_offsets, block, path,
                                                                         position_at, offset)
            end = {"offset": end_offset}
            yield Chunk(path, start, end, rows, tuple(rejects), len(block), timings=timings, row_offsets=row_offsets)
            start, offset = end, end_offset
            self._offsets[path] = offset

    def _read_block(self, path: str, offset: int, size: int) -> bytes:
        """Whole lines from `offset`: at most `read_size` bytes (unless one line is longer) and
        `max_rows` lines; an unterminated last line only when the file has stopped growing."""
        with open(path, "rb") as handle:
            handle.seek(offset)
            block = handle.read(min(self.config.read_size, size - offset))
            while b"\n" not in block and offset + len(block) < size:
                more = handle.read(min(self.config.read_size, size - offset - len(block)))
                if not more:
                    break
                block += more
        newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if len(newlines) > self.max_rows:
            return block[: int(newlines[self.max_rows - 1]) + 1]
        if offset + len(block) < size or block.endswith(b"\n"):
            return block[: int(newlines[-1]) + 1] if len(newlines) else block
        # The file ends in a line without a newline: complete under --once, or once it stops growing.
        held_size, since = self._held_tail.get(path, (-1, time.monotonic()))
        if self.once or (held_size == size and time.monotonic() - since >= self.config.partial_line_timeout):
            self._held_tail.pop(path, None)
            return block
        self._held_tail[path] = (size, since if held_size == size else time.monotonic())
        return block[: int(newlines[-1]) + 1] if len(newlines) else b""

    @staticmethod
    def _csv_header(path: str, delimiter: str) -> tuple[list[str] | None, int]:
        with open(path, "rb") as handle:
            line = handle.readline()
        if not line.endswith(b"\n"):
            return None, 0  # no complete header yet
        text = line.decode("utf-8-sig").rstrip("\r\n")
        return [c.strip() for c in next(csv.reader([text], delimiter=delimiter))], len(line)

    async def _read_parquet(self, path: str, position: Position) -> AsyncIterator[Chunk]:
        done = int(position["row"]) if position else 0
        parquet = await asyncio.to_thread(pq.ParquetFile, path)
        total = parquet.metadata.num_rows
        self._sizes[path] = total
        self._offsets[path] = done
        batches = parquet.iter_batches(batch_size=self.max_rows)
        seen = 0
        start = position
        while True:
            timings = Timings()
            with timings.stage("poll"):
                batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                return
            first, seen = seen, seen + batch.num_rows
            if seen <= done:
                continue
            rows = pa.Table.from_batches([batch]).slice(max(0, done - first))
            end = {"row": seen}
            yield Chunk(path, start, end, rows, (), rows.nbytes, timings=timings)
            start = end
            self._offsets[path] = seen


def _decode_jsonl_with_offsets(block: bytes, path: str, position_at: Callable[[int], Position],
                               base: int) -> tuple[pa.Table, list[Reject], np.ndarray]:
    """Decode a block and say, per row, the file offset just after its line."""
    rows, rejects, kept = decode_jsonl_lines(block, path, position_at)
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + 1 + base
    if not block.endswith(b"\n"):
        ends = np.append(ends, base + len(block))
    return rows, rejects, ends if kept is None else ends[kept]
