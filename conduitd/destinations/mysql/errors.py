"""asyncmy exceptions translated into conduitd's tree, by MySQL error number (never its wording).

    1045, 1044, 1049, 1698       ConfigError (exit 2): access denied, unknown database; the
                                 message names the server and the user, never the password
    2002, 2003, 2005, 2006,      DependencyUnreachable while connecting, TransientError after:
      2013, 2055, 1040, 1053     the server cannot be reached or dropped the connection
    1205, 1213, 1927, 1317       TransientError: lock wait timeout, deadlock, connection killed,
                                 query interrupted; a retry of the batch may succeed
    refused values (1048, 1062,  RowsRefused: the writer isolates the rows and dead-letters them
      1264, 1265, 1292, 1366,
      1406, 1452, 1644, 3819,
      4025, ...)
    1054                         SchemaIncompatible: the table has no such column
    anything else                ConduitError
"""

from __future__ import annotations

import asyncio

from conduitd.destinations.base import RowsRefused
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, SchemaIncompatible, TransientError

ACCESS = {1044, 1045, 1049, 1698}
UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055, 1040, 1053, 1129, 1130}
TRANSIENT = {1205, 1213, 1927, 1317, 1180, 1181, 4031}
REFUSED = {
    1048,  # column cannot be null
    1062, 1586, 1169,  # duplicate entry for a unique key
    1264, 1690,  # out of range
    1265, 1366, 1292, 1367, 1411, 1406,  # truncated, incorrect value, too long
    1364,  # a NOT NULL column without default was given nothing
    1451, 1452,  # foreign key
    1644,  # a trigger's SIGNAL
    3819, 4025,  # CHECK constraint (MySQL, MariaDB)
    3140,  # invalid JSON (MySQL)
    1118, 1071,  # the row or a key is too large
}
DUPLICATE_OBJECT = {1050, 1060, 1061, 1826}  # table, column, key, foreign key exist already


def code_of(exc: BaseException) -> int | None:
    """The MySQL error number of an asyncmy error, or None."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _message(exc: BaseException) -> str:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    code = code_of(exc)
    text = str(args[1]) if len(args) > 1 else str(exc)
    return f"MySQL {code}: {text}" if code is not None else f"{type(exc).__name__}: {text or 'no message'}"


def translate(exc: BaseException) -> BaseException:
    """The exception to raise instead of `exc` (itself when it is no database error)."""
    if isinstance(exc, ConduitError | RowsRefused | asyncio.CancelledError):
        return exc
    from asyncmy import errors  # lazily: imported by the destination only

    code = code_of(exc)
    if isinstance(exc, errors.MySQLError) and code is not None and code not in UNREACHABLE:
        message = _message(exc)
        if code in REFUSED:
            return RowsRefused(message)
        if code in TRANSIENT:
            return TransientError(message)
        if code in ACCESS:
            return ConfigError(f"{message} (check the destination's user, password and database)")
        if code == 1054:
            return SchemaIncompatible(message)
        return ConduitError(message)
    if isinstance(exc, errors.MySQLError | OSError | TimeoutError | ConnectionError | EOFError):
        return TransientError(f"MySQL connection lost: {_message(exc)}")
    return exc


def unreachable(exc: BaseException, where: str, user: str | None) -> ConduitError:
    """Connecting failed: name the server and the user (never the password) and the cause."""
    translated = translate(exc)
    if isinstance(translated, ConfigError):
        return ConfigError(f"cannot connect to MySQL at {where} as {user!r}: {translated}")
    return DependencyUnreachable(f"cannot connect to MySQL at {where}: {_message(exc)}")
