"""Appending records to a file so that each append is whole and on disk, or not there at all."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def append_whole(path: Path, data: bytes) -> None:
    """Append `data` and fsync; on a failed write (a full disk) cut the file back to where it
    was, so a torn last line cannot swallow the next record appended after it. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        size = handle.tell()
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                handle.truncate(size)
            raise
