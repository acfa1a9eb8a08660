"""Which DuckDB database files this process holds open with a writable configuration.

DuckDB shares one database between the connections a process opens to a file, but only when they
are opened with the same configuration: a read-only connection to a file this process writes is
refused. The control plane's reads (usage, audit, pending schema changes) run in the daemon
beside the pipeline writing the file, so a read-only open of a file held here opens a
connection like the writer's instead (and writes nothing: read-only opens create no tables).
A writer that finds the file open read-only in this process is refused by DuckDB and retries
(`errors.open_error`): read-only connections here are short-lived."""

from __future__ import annotations

import os
import threading
from collections import Counter

_lock = threading.Lock()
_writers: Counter[str] = Counter()


def _key(path: str) -> str:
    return os.path.realpath(path)


def hold(path: str) -> None:
    """A connection with a writable configuration was opened to `path`."""
    with _lock:
        _writers[_key(path)] += 1


def release(path: str) -> None:
    """That connection was closed."""
    with _lock:
        key = _key(path)
        _writers[key] -= 1
        if _writers[key] <= 0:
            del _writers[key]


def is_held(path: str) -> bool:
    """Whether this process has `path` open with a writable configuration."""
    with _lock:
        return _writers[_key(path)] > 0
