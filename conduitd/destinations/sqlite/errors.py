"""sqlite3 exceptions translated into conduitd's tree, by SQLite's result code (never its wording).

    BUSY, LOCKED                    TransientError: another writer holds the database; retry
    FULL, IOERR                     TransientError: the disk filled or stumbled; retry
    READONLY, and CANTOPEN/PERM     ConfigError (exit 2) when the file or its directory cannot
      where the path is unwritable  be written (a read-only mount, a directory in the way)
    CANTOPEN otherwise              DependencyUnreachable: the volume may appear later
    CORRUPT, NOTADB                 ConduitError: not a database conduitd can use
    IntegrityError, DataError       not translated: the writer turns them into RowsRefused

SQLite opens a file it cannot write read-only without a word, so `unwritable_reason` asks the
operating system why, for a message that names the real cause.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, TransientError
from conduitd.oserrors import os_error_text

_RETRIABLE = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
_MAYBE_UNWRITABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}


def translate(exc: sqlite3.Error, path: str) -> BaseException:
    """The exception to raise instead of `exc`, for the database at `path`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = f"SQLite database {path!r}: {exc} ({getattr(exc, 'sqlite_errorname', None) or type(exc).__name__})"
    if primary in _RETRIABLE:
        return TransientError(text)
    if primary in _MAYBE_UNWRITABLE:
        reason = unwritable_reason(path)
        if reason is not None or primary == sqlite3.SQLITE_READONLY:
            return ConfigError(f"SQLite database {path!r} cannot be written: {reason or exc}; make the file and its "
                               "directory writable (SQLite also writes its -wal and -shm files beside it)")
        return DependencyUnreachable(f"cannot open {text}")
    return ConduitError(text)


def unwritable_reason(path: str) -> str | None:
    """Why the operating system will not let the database at `path` be written, or None."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    target = Path(path)
    try:
        if target.exists():
            os.close(os.open(target, os.O_RDWR))
        # The -wal and -shm files are created beside the database.
        with tempfile.TemporaryFile(dir=target.parent if str(target.parent) else "."):
            pass
    except OSError as exc:
        return os_error_text(exc)
    return None
