"""duckdb exceptions translated into conduitd's tree, by the exception's class (never its wording).

    ConstraintException, ConversionException,   RowsRefused: a value the table refuses (a NULL
      OutOfRangeException                       key, a number out of range); the batch fails
    IOException, TransactionException,          TransientError: the file is locked by another
      OutOfMemoryException, InterruptException  process, the disk stumbled; retry
    PermissionException                         ConfigError (exit 2)
    anything else                               ConduitError
Opening the database is translated apart (`open_error`): a missing directory is a ConfigError, a
file another process holds (DuckDB locks it), or this process holds read-only (a connection of
another configuration), DependencyUnreachable, retried like a server away.
"""

from __future__ import annotations

import os

import duckdb

from conduitd.destinations.base import RowsRefused
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, TransientError

_REFUSED = (duckdb.ConstraintException, duckdb.ConversionException, duckdb.OutOfRangeException)
_RETRIABLE = (duckdb.IOException, duckdb.TransactionException, duckdb.OutOfMemoryException,
              duckdb.InterruptException)


def translate(exc: duckdb.Error, path: str) -> Exception:
    """The exception to raise instead of `exc`, for the database at `path`."""
    text = f"DuckDB database {path!r}: {exc} ({type(exc).__name__})"
    if isinstance(exc, _REFUSED):
        return RowsRefused(f"DuckDB refused the row: {exc}")
    if isinstance(exc, _RETRIABLE):
        return TransientError(text)
    if isinstance(exc, duckdb.PermissionException):
        return ConfigError(text)
    return ConduitError(text)


def open_error(exc: duckdb.Error, path: str) -> Exception:
    """The exception to raise when the database at `path` cannot be opened."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return ConfigError(f"DuckDB database {path!r}: directory {directory!r} does not exist")
    if isinstance(exc, duckdb.IOException):
        return DependencyUnreachable(f"cannot open DuckDB database {path!r} (another process may hold it: DuckDB "
                                     f"lets one process write a file): {exc}")
    if isinstance(exc, duckdb.ConnectionException):
        # This process has the file open read-only (the control plane reading it): retried after.
        return DependencyUnreachable(f"cannot open DuckDB database {path!r} for writing yet (this process is "
                                     f"reading it): {exc}")
    return translate(exc, path)
