"""MySQL/MariaDB error numbers the table source tells apart (copied from the destination's errors
module: sources do not import destinations)."""

from __future__ import annotations

ACCESS = {1044, 1045, 1049, 1698}
"""Access denied to the database or for the user, unknown database, socket auth refused."""
LOST = {0, 2002, 2003, 2005, 2006, 2013, 2055, 1040, 1053, 1129, 1130, 1927, 4031}
"""Cannot connect, server gone or shut down, too many connections, host blocked, connection
killed, idle client disconnected; 0: asyncmy's own (no connection)."""
NO_PRIVILEGE = {1227, 1142, 1044}
"""The account may not read INNODB_TRX (it needs PROCESS)."""


def code_of(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def message(exc: BaseException) -> str:
    args = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 else (str(exc) or type(exc).__name__)
    code = code_of(exc)
    return f"MySQL {code}: {text}" if code else text
