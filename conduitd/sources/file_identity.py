"""Which file a stored position belongs to, so that a replaced file is read again from its start.

A file source's position says where to resume *and* what content it was taken from:

    {"offset": N, "inode": I, "fingerprint": F}     JSON lines, CSV, JSON documents
    {"row": N, "inode": I, "fingerprint": F}        Parquet

For files read line by line, F hashes the first `WINDOW` bytes and the `WINDOW` bytes just before
N: both are bytes already read, so appending to the file (even to one shorter than `WINDOW`) keeps
them, while an overwrite, a larger replacement or a shrink almost surely changes one of them. A new
inode means the name now points at another file (`mv`/`os.replace` over it, delete and create).
Parquet files cannot be appended to: F hashes their size, first and last `WINDOW` bytes (the
footer, with the row counts and statistics). An S3 object is never appended to, only replaced:
its position is `{"offset": N, "etag": E}` (or `{"row": N, "etag": E}`), and another ETag means
another object. The position is a pure function of the file's
content and N, so the checkpoint's compare-and-set (canonical JSON) sees the same text for the
same place. A position without identity (checkpoints of earlier versions) is taken to be the same
file, as those versions did.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from conduitd.core.records import Position

log = logging.getLogger(__name__)

WINDOW = 1024
"""Bytes hashed at each end of what was read (changing it makes stored positions look replaced)."""


@dataclass(frozen=True, slots=True)
class OpenFile:
    """A file opened for one read pass: everything in the pass reads this inode, even if the name
    is moved or removed meanwhile."""

    path: str
    handle: BinaryIO
    inode: int
    size: int
    stamp: tuple[int, int, int, int]
    """Inode, size, modification and change times when it was opened: while the name still
    shows these, the file has not changed since."""
    etag: str | None = None
    """An S3 object's ETag (its identity instead of inode and fingerprint); None for a file."""

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer at the end), without moving a shared file pointer."""
        return os.pread(self.handle.fileno(), max(0, length), offset)


def open_file(path: str) -> OpenFile:
    """Open `path` for reading; FileNotFoundError when it is gone (the caller logs and goes on)."""
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller when the pass ends
    try:
        status = os.fstat(handle.fileno())
    except OSError:
        handle.close()
        raise
    return OpenFile(path, handle, status.st_ino, status.st_size, stamp(status))


def stamp(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _digest(*parts: bytes) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()


def prefix_fingerprint(file: OpenFile, offset: int) -> str:
    """The fingerprint of the first `offset` bytes of a file read line by line (see the module)."""
    head = file.read(0, min(WINDOW, offset))
    before = file.read(offset - WINDOW, WINDOW) if offset > WINDOW else head
    return _digest(head, before)


def whole_fingerprint(file: OpenFile) -> str:
    """The fingerprint of a file that is only ever replaced, never appended to (Parquet)."""
    return _digest(file.size.to_bytes(8, "little"), file.read(0, WINDOW),
                   file.read(max(0, file.size - WINDOW), WINDOW))


def line_position(file: OpenFile, offset: int) -> Position:
    """The position after byte `offset` of `file` (a line or JSON document file)."""
    if file.etag is not None:
        return {"offset": offset, "etag": file.etag}
    return {"offset": offset, "inode": file.inode, "fingerprint": prefix_fingerprint(file, offset)}


def row_position(file: OpenFile, row: int, fingerprint: str) -> Position:
    """The position after row `row` of a Parquet file whose `whole_fingerprint` is `fingerprint`
    (an object's: its ETag)."""
    if file.etag is not None:
        return {"row": row, "etag": file.etag}
    return {"row": row, "inode": file.inode, "fingerprint": fingerprint}


def _other_inode(position: Position, file: OpenFile) -> bool:
    stored = position.get("inode")
    return stored is not None and file.inode != 0 and int(stored) != file.inode


def _other_object(position: Position, file: OpenFile) -> bool:
    stored = position.get("etag")
    return stored is not None and file.etag is not None and stored != file.etag


def resume_offset(position: Position, file: OpenFile) -> int:
    """Where to continue reading `file` (line by line) after the stored `position`: its offset
    when the file is the one it was taken from, else 0 (with a warning: it is read again)."""
    if not position:
        return 0
    offset = int(position["offset"])
    if _other_object(position, file):
        why = "another object now has its name (the ETag changed)"
    elif offset > file.size:
        why = f"it is shorter than its committed position ({file.size} < {offset} bytes)"
    elif _other_inode(position, file):
        why = "another file now has its name (the inode changed)"
    elif file.etag is None and "fingerprint" in position \
            and position["fingerprint"] != prefix_fingerprint(file, offset):
        why = "the bytes read before were overwritten"
    else:
        return offset
    log.warning("%s was replaced: %s; reading it again from the start", file.path, why)
    return 0


def resume_row(position: Position, file: OpenFile, fingerprint: str, rows: int) -> int:
    """Like `resume_offset`, for a Parquet file of `rows` rows and the given whole fingerprint."""
    if not position:
        return 0
    row = int(position["row"])
    if _other_object(position, file):
        why = "another object now has its name (the ETag changed)"
    elif row > rows:
        why = f"it has fewer rows than its committed position ({rows} < {row})"
    elif _other_inode(position, file):
        why = "another file now has its name (the inode changed)"
    elif file.etag is None and "fingerprint" in position and position["fingerprint"] != fingerprint:
        why = "its content changed"
    else:
        return row
    log.warning("%s was replaced: %s; reading it again from the start", file.path, why)
    return 0
