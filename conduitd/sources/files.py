"""The file source: JSON lines, JSON documents, CSV or Parquet files: one file, a directory, or a
glob, locally or on S3 (`s3://bucket/prefix/`, a glob of keys or one object: `file_objects`).

A partition is one file (its path as matched). Its position is ``{"offset": N, "inode": I,
"fingerprint": F}`` (the byte after the last complete line or JSON record read), or ``{"row": N,
...}`` for Parquet: the inode and fingerprint say which content N belongs to, so a file replaced
in place (overwritten, renamed over, shrunk) is read again from its start, with a warning, and
an appended one from where it stopped (see `file_identity`). In daemon mode new files and lines
appended to existing files are picked up every `poll_interval`; a last line without its newline,
a JSON document not yet complete or a Parquet file without its footer is held back until the file
has stopped growing for `partial_line_timeout`, since it may still be being written.

A `.json` (or JSON lines) file that is one JSON array of records, a pretty-printed object or a
sequence of them is read as its records (`json_documents`); a UTF-8 BOM at the start of a JSON
lines file is skipped. Parquet values no destination holds
are made writable or rejected (`parquet_values`). A configured single file that does not exist is
a config error under `--once` (and in `validate`); in daemon mode it is reported until it appears.
A file removed while it is being read is logged and skipped; what was committed stays.

An S3 object is read like a file, in ranges of `read_size`; its identity is its ETag, so a
replaced object is read again from its start. Objects are listed on every pass in daemon mode
(new ones are read); an object whose listed size and modification time are unchanged since it
was read to its end is not opened again.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import glob
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conduitd.config import FileSourceConfig
from conduitd.core.bytescan import lf_offsets
from conduitd.core.csvdecode import decode_csv_rows, refuse_rows
from conduitd.core.records import Chunk, Position, Reject
from conduitd.core.timings import Timings
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable
from conduitd.s3settings import is_s3
from conduitd.sources.base import Checkpoints
from conduitd.sources.file_identity import (
    OpenFile,
    line_position,
    open_file,
    resume_offset,
    resume_row,
    row_position,
    stamp,
    whole_fingerprint,
)
from conduitd.sources.file_objects import ObjectStore
from conduitd.sources.file_text import (
    DocumentReader,
    decode_lines_with_offsets,
    first_line,
    layout_of,
    read_document,
)
from conduitd.sources.parquet_values import make_writable

log = logging.getLogger(__name__)

Format = Literal["jsonl", "csv", "parquet"]
_EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


_BOM = b"\xef\xbb\xbf"


def _is_utf8(encoding: str) -> bool:
    """UTF-8 under any of its spellings (a BOM at the start of such a file is skipped)."""
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


class FileSource:
    """See the module docstring."""

    def __init__(self, config: FileSourceConfig, *, once: bool, max_rows: int) -> None:
        self.config = config
        self.once = once
        self.max_rows = max_rows
        self._offsets: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._held: dict[str, tuple[int, float]] = {}
        self._settled: dict[str, tuple[int, int, int, int]] = {}
        """Files read to their end, by stat stamp: a daemon pass skips them while it is unchanged."""
        self._problems: dict[str, str] = {}
        self._objects: ObjectStore | None = None

    epoch = 0

    def lag(self) -> dict[str, dict[str, float]]:
        return {p: {"bytes": max(0, self._sizes.get(p, 0) - o)} for p, o in self._offsets.items()}

    def problem(self) -> str | None:
        return next(iter(self._problems.values()), None)

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        return None

    async def close(self) -> None:
        return None

    async def resync(self) -> bool:
        return False  # two writers of one file pipeline is a misconfiguration: stop

    def discover(self) -> list[str]:
        """Files to read, in name order. A configured single file that does not exist raises
        ConfigError in `once` mode (a batch run or a check would report success having read
        nothing); in daemon mode it is reported by `problem` until it appears."""
        path = self.config.path
        if is_s3(path):
            return self._discover_objects()
        if os.path.isdir(path):
            found = [str(Path(path) / n) for n in os.listdir(path)]
            found = [f for f in found if self._format_of(f, strict=True) is not None]
        elif glob.has_magic(path):
            found = glob.glob(path)
        elif os.path.exists(path):
            found = [path]
        else:
            message = (f"source {self.config.name!r}: path {path!r} does not exist (for files that may arrive "
                       "later, name their directory or a glob)")
            if self.once:
                raise ConfigError(message)
            if path not in self._problems:
                log.warning("%s; waiting for it", message)
            self._problems[path] = message
            return []
        self._problems.pop(path, None)
        return sorted(f for f in found if os.path.isfile(f))

    def _store(self) -> ObjectStore:
        if self._objects is None:
            self._objects = ObjectStore(self.config)
        return self._objects

    def _discover_objects(self) -> list[str]:
        """`discover` on S3: a missing object or bucket, or S3 out of reach, raises under `once`
        and is reported by `problem` (and looked for again) in daemon mode."""
        path = self.config.path
        try:
            found = self._store().discover(lambda name: self._format_of(name, strict=True) is not None)
        except OSError as exc:
            message = f"source {self.config.name!r}: cannot list {path}: {exc}"
            if self.once:
                raise DependencyUnreachable(message) from None
            if self._problems.get(path) != message:
                log.error("%s; trying again", message)
            self._problems[path] = message
            return []
        if found is None:
            message = f"source {self.config.name!r}: no object {path} (for objects that may arrive later, name " \
                      "their prefix, ending in /, or a glob)"
            if self.once:
                raise ConfigError(message)
            if path not in self._problems:
                log.warning("%s; waiting for it", message)
            self._problems[path] = message
            return []
        self._problems.pop(path, None)
        return found

    def _stats_now(self) -> dict[str, tuple[int, int]]:
        """Inode and size of every file now: what a `once` run reads."""
        found = {}
        if is_s3(self.config.path):
            found = {path: (0, self._store().listed[path][1]) for path in self.discover()}
        else:
            for path in self.discover():
                with contextlib.suppress(FileNotFoundError):
                    status = os.stat(path)
                    found[path] = (status.st_ino, status.st_size)
        if not found:
            log.warning("no file matches %s: nothing to read", self.config.path)
        return found

    def _format_of(self, path: str, strict: bool = False) -> Format | None:
        by_extension = _EXTENSIONS.get(Path(path).suffix.lower())
        if self.config.format is None:
            return by_extension
        if strict and by_extension != self.config.format:
            return None
        return self.config.format

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        stored = await checkpoints.committed()
        limit: dict[str, tuple[int, int]] | None = None
        if self.once:
            limit = await asyncio.to_thread(self._stats_now)
        while not stop.is_set():
            files = list(limit) if limit is not None else await asyncio.to_thread(self.discover)
            produced = False
            for path in files:
                reader = self._read(path, stored.get(path), limit.get(path) if limit else None)
                async with contextlib.aclosing(reader):
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

    async def _read(self, path: str, position: Position, limit: tuple[int, int] | None) -> AsyncGenerator[Chunk, None]:
        fmt = self._format_of(path)
        if fmt is None:
            log.warning("skipping %s: unknown file format (set 'format' on the source)", path)
            return
        opened = await self._open(path)
        if opened is None:
            return
        try:
            size = opened.size
            if limit is not None and limit[0] == opened.inode:
                size = min(size, limit[1])  # --once: what was there at start (unless it was replaced since)
            if fmt == "parquet":
                chunks = self._read_parquet(opened, position)
            else:
                chunks = self._read_text(opened, fmt, position, size)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
        finally:
            opened.handle.close()

    async def _open(self, path: str) -> OpenFile | None:
        """The file opened for a pass; None when it is gone, unreadable (logged) or, in daemon
        mode, unchanged since it was read to its end."""
        try:
            if self._objects is not None:
                if not self.once and self._settled.get(path) == self._objects.listed.get(path):
                    return None
                opened: OpenFile = await asyncio.to_thread(self._objects.open, path)
            else:
                if not self.once:
                    status = await asyncio.to_thread(os.stat, path)
                    if self._settled.get(path) == stamp(status):
                        return None
                opened = await asyncio.to_thread(open_file, path)
        except FileNotFoundError:
            log.warning("%s was removed before it was read to its end; going on with the other files", path)
            self._forget(path)
            return None
        except OSError as exc:
            message = f"cannot read {path}: {exc.strerror or exc}"
            if self.once:
                raise ConduitError(message) from None
            if self._problems.get(path) != message:
                log.error("%s; skipping it until it can be read", message)
            self._problems[path] = message
            return None
        self._problems.pop(path, None)
        return opened

    def _forget(self, path: str) -> None:
        for state in (self._offsets, self._sizes, self._held, self._settled, self._problems):
            state.pop(path, None)

    def _settle(self, opened: OpenFile, offset: int) -> None:
        """Remember a file read to its end, so an unchanged file is not opened every poll."""
        if offset >= opened.size:
            self._settled[opened.path] = opened.stamp  # as opened: a change since shows at the next pass
            self._held.pop(opened.path, None)

    def _ready(self, path: str, size: int) -> bool:
        """May an incomplete end of `path` be taken now? Under --once, and for an S3 object (a PUT
        is whole), yes; in daemon mode once the file has kept `size` for `partial_line_timeout`
        (it may still be being written)."""
        held_size, since = self._held.get(path, (-1, time.monotonic()))
        settled = held_size == size and time.monotonic() - since >= self.config.partial_line_timeout
        if self.once or is_s3(path) or settled:
            self._held.pop(path, None)
            return True
        self._held[path] = (size, since if held_size == size else time.monotonic())
        return False

    async def _read_text(self, opened: OpenFile, fmt: Format, position: Position,
                         size: int) -> AsyncGenerator[Chunk, None]:
        path = opened.path
        self._sizes[path] = size
        offset = await asyncio.to_thread(resume_offset, position, opened)
        self._offsets[path] = offset
        if fmt == "jsonl" and await asyncio.to_thread(layout_of, opened, size, self.config.encoding) == "document":
            data, document = await asyncio.to_thread(read_document, opened, size)
            if not document.complete and not self._ready(path, size):
                return  # it may still be being written
            if document.complete or not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
                async with contextlib.aclosing(DocumentReader(opened, size, data, document, self.config,
                                                              self.max_rows).chunks(position, offset)) as chunks:
                    async for chunk in chunks:
                        self._offsets[path] = int(chunk.end["offset"])
                        yield chunk
                self._settle(opened, self._offsets[path])
                return
            # An object that never closes: JSON lines whose first line is broken, not a document.
        if fmt == "jsonl" and offset == 0 and _is_utf8(self.config.encoding) \
                and await asyncio.to_thread(opened.read, 0, len(_BOM)) == _BOM:
            offset = len(_BOM)  # a UTF-8 BOM at the start of the file is not part of the first record
        header: list[str] | None = None
        refused: str | None = None  # why no row of the file can be read (its header cannot be decoded)
        if fmt == "csv":
            header, header_end, refused = await asyncio.to_thread(self._csv_header, opened)
            if header is None:
                return
            offset = max(offset, header_end)
        start = position
        if position and int(position["offset"]) != offset and not await self._has_records(opened, offset, size):
            # Replaced by a file with nothing to read yet: record the new file's identity, so the
            # replacement is not reported again on every pass.
            end = await asyncio.to_thread(line_position, opened, offset)
            yield Chunk(path, start, end, pa.table({}), ())
            start = end
        while offset < size:
            timings = Timings()
            with timings.stage("poll"):
                block = await asyncio.to_thread(self._read_block, opened, offset, size)
            if not block:
                return
            end_offset = offset + len(block)
            with timings.stage("decode"):
                rows, rejects, row_offsets = await asyncio.to_thread(self._decode, block, header, path, offset,
                                                                     refused)
                end = await asyncio.to_thread(line_position, opened, end_offset)
            yield Chunk(path, start, end, rows, tuple(rejects), len(block), timings=timings, row_offsets=row_offsets)
            start, offset = end, end_offset
            self._offsets[path] = offset
        self._settle(opened, offset)

    async def _has_records(self, opened: OpenFile, offset: int, size: int) -> bool:
        return offset < size and bool(await asyncio.to_thread(opened.read, offset, min(size - offset, 1)))

    def _decode(self, block: bytes, header: list[str] | None, path: str, base: int,
                refused: str | None = None) -> tuple[pa.Table, list[Reject], np.ndarray | None]:
        """Rows and rejects of `block`; `refused`: why every row goes to the DLQ instead."""
        def position_at(relative: int) -> Position:
            return {"offset": base + relative}

        limit, encoding = self.config.max_record_bytes, self.config.encoding
        if refused is not None:
            return pa.table({}), refuse_rows(block, refused, path, position_at, encoding=encoding), None
        if header is not None:
            rows, rejects, ends = decode_csv_rows(block, header, self.config.csv_delimiter, path, position_at,
                                                  max_record_bytes=limit, encoding=encoding,
                                                  null_values=self.config.null_values)
            return rows, rejects, None if ends is None else ends + base
        return decode_lines_with_offsets(block, path, position_at, base, max_record_bytes=limit, encoding=encoding)

    def _read_block(self, opened: OpenFile, offset: int, size: int) -> bytes:
        """Whole lines from `offset`: at most `read_size` bytes (unless one line is longer) and
        `max_rows` lines; an unterminated last line only when the file has stopped growing."""
        block = opened.read(offset, min(self.config.read_size, size - offset))
        while b"\n" not in block and offset + len(block) < size:
            more = opened.read(offset + len(block), min(self.config.read_size, size - offset - len(block)))
            if not more:
                break
            block += more
        newlines = lf_offsets(block)
        if len(newlines) > self.max_rows:
            return block[: int(newlines[self.max_rows - 1]) + 1]
        if offset + len(block) < size or block.endswith(b"\n"):
            return block[: int(newlines[-1]) + 1] if len(newlines) else block
        # The file ends in a line without a newline: complete under --once, or once it stops growing.
        if self._ready(opened.path, size):
            return block
        return block[: int(newlines[-1]) + 1] if len(newlines) else b""

    def _csv_header(self, opened: OpenFile) -> tuple[list[str] | None, int, str | None]:
        """The column names from the first line, in the configured encoding, and where it ends.
        Empty or repeated names are kept as they are: the pipeline decides what a destination can
        take. A header with bytes not valid in the encoding names no column (no name is made up
        from escapes): then no names, and why every row of the file goes to the DLQ instead, as a
        row with such bytes does. A replaced file is read again from its start."""
        line = first_line(opened)
        if not line.endswith(b"\n"):
            return None, 0, None  # no complete header yet
        encoding = "utf-8-sig" if _is_utf8(self.config.encoding) else self.config.encoding
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError as exc:
            reason = (f"the CSV header (line 1) is not valid {self.config.encoding} text: {exc.reason} at byte "
                      f"{exc.start}; no column can be named, so no row of this file is loaded (fix the header "
                      "or the source's 'encoding'; a replaced file is read again)")
            log.error("%s: %s", opened.path, reason)
            return [], len(line), reason
        text = text.removeprefix("\ufeff").rstrip("\r\n")
        cells = next(csv.reader([text], delimiter=self.config.csv_delimiter), [])
        return [c.strip() for c in cells], len(line), None

    async def _read_parquet(self, opened: OpenFile, position: Position) -> AsyncGenerator[Chunk, None]:
        path = opened.path
        fingerprint = await asyncio.to_thread(whole_fingerprint, opened) if opened.etag is None else opened.etag
        try:
            parquet = await asyncio.to_thread(pq.ParquetFile, opened.handle)
        except (pa.ArrowInvalid, OSError) as exc:
            # Not (yet) a Parquet file: it may still be being written; once it has stopped growing
            # it goes to the DLQ as a whole, so it stops nothing and is read again when replaced.
            if self._ready(path, opened.size):
                end = row_position(opened, 0, fingerprint)
                if end != position:
                    reject = Reject(path, {"row": 0}, f"not a readable Parquet file: {exc}", "")
                    yield Chunk(path, position, end, pa.table({}), (reject,), 0)
                self._settle(opened, opened.size)
            return
        total = parquet.metadata.num_rows
        done = resume_row(position, opened, fingerprint, total)
        self._sizes[path] = total
        self._offsets[path] = done
        batches = parquet.iter_batches(batch_size=self.max_rows)
        seen = 0
        start = position
        while seen < total:
            timings = Timings()
            with timings.stage("poll"):
                batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            first, seen = seen, seen + batch.num_rows
            if seen <= done:
                continue
            skipped = max(0, done - first)
            with timings.stage("decode"):
                rows, rejects = await asyncio.to_thread(
                    make_writable, pa.Table.from_batches([batch]).slice(skipped), path, first + skipped,
                    lambda row: {"row": row})
            end = row_position(opened, seen, fingerprint)
            # Per row, the row number after it: a DLQ entry points at its row as `{"row": n}`,
            # as the rejects above do. The rows left are the batch's minus the rejected ones.
            after = np.arange(first + skipped + 1, seen + 1, dtype=np.int64)
            kept = np.setdiff1d(after, np.array([int(r.position["row"]) for r in rejects], dtype=np.int64))
            yield Chunk(path, start, end, rows, tuple(rejects), rows.nbytes, timings=timings,
                        row_offsets=kept, row_key="row")
            start = end
            self._offsets[path] = seen
        self._settle(opened, opened.size)

