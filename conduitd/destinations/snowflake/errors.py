"""Snowflake connector exceptions translated into conduitd's tree, by Snowflake error number
(`errno`) and exception type, never by wording.

    390100, 390101, 390102,      ConfigError (exit 2): wrong user or password, a locked or
      390144, 390201, 390189,    disabled user, an unknown database, role or warehouse; the
      002043 at login            message names the account and the user, never the password
    250001, 250003, 251012,      DependencyUnreachable while connecting, TransientError after:
      OperationalError           the account cannot be reached or dropped the connection
    000625, 000630, 390114       TransientError: a statement aborted by a concurrent one, a lock
                                 wait, an expired session; a retry of the batch may succeed
    refused values (100035,      RowsRefused: a value the column cannot hold (NULL into NOT NULL,
      100038, 100040, 100069,    a number, date or time that does not parse, a text too long);
      100071, 100072, 100078,    the batch fails (Snowflake has no savepoints to isolate it)
      100145, 100035, ...)
    000904, 002003               SchemaIncompatible: no such column, no such table
    anything else                ConduitError

fakesnow (the emulator the tests run against) raises DuckDB's ConstraintException for a NULL
into a NOT NULL column: taken as a refused value too (by its type).
"""

from __future__ import annotations

import asyncio

from conduitd.destinations.base import RowsRefused
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, SchemaIncompatible, TransientError

ACCESS = {390100, 390101, 390102, 390144, 390201, 390189, 390422, 390318}
UNREACHABLE = {250001, 250003, 251012, 251011, 390114}
TRANSIENT = {625, 630, 604, 390111, 390112}
REFUSED = {100035, 100038, 100040, 100069, 100071, 100072, 100078, 100145, 100037, 100116, 100039}
MISSING = {904, 2003}


def code_of(exc: BaseException) -> int | None:
    """The Snowflake error number of a connector error, or None."""
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and code > 0 else None


def _message(exc: BaseException) -> str:
    text = str(getattr(exc, "raw_msg", None) or exc).strip()
    code = code_of(exc)
    return f"Snowflake {code:06d}: {text}" if code is not None else f"{type(exc).__name__}: {text or 'no message'}"


def translate(exc: BaseException) -> BaseException:
    """The exception to raise instead of `exc` (itself when it is no database error)."""
    if isinstance(exc, ConduitError | RowsRefused | asyncio.CancelledError):
        return exc
    from snowflake.connector import errors  # lazily: imported by the destination only

    if type(exc).__module__.startswith(("duckdb", "_duckdb")) and type(exc).__name__ == "ConstraintException":
        return RowsRefused(f"{type(exc).__name__}: {exc}")
    code = code_of(exc)
    if isinstance(exc, errors.OperationalError) or code in UNREACHABLE:
        return TransientError(f"Snowflake connection lost: {_message(exc)}")
    if isinstance(exc, errors.Error):
        message = _message(exc)
        if code in REFUSED:
            return RowsRefused(message)
        if code in TRANSIENT:
            return TransientError(message)
        if code in ACCESS:
            return ConfigError(f"{message} (check the destination's account, user, password, role and warehouse)")
        if code in MISSING:
            return SchemaIncompatible(message)
        return ConduitError(message)
    return exc


def unreachable(exc: BaseException, where: str) -> ConduitError:
    """Connecting failed: name the account and the user (never the password) and the cause."""
    translated = translate(exc)
    if isinstance(translated, ConfigError):
        return ConfigError(f"cannot connect to Snowflake ({where}): {translated}")
    if isinstance(translated, ConduitError) and not isinstance(translated, TransientError):
        return ConfigError(f"cannot connect to Snowflake ({where}): {translated}")
    return DependencyUnreachable(f"cannot connect to Snowflake ({where}): {_message(exc)}")
