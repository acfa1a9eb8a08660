"""asyncpg exceptions translated into conduitd's tree, by SQLSTATE class and exception type."""

from __future__ import annotations

import asyncio

import asyncpg

from conduitd.destinations.base import RowsRefused
from conduitd.errors import ConduitError, DependencyUnreachable, SchemaIncompatible, TransientError

_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, operator, system
# data exception, integrity constraint violation, WITH CHECK OPTION violation, and PL/pgSQL
# errors: a trigger's RAISE EXCEPTION (P0001) or ASSERT (P0004) refuses the row it was called for.
_REFUSED_CLASSES = ("22", "23", "44", "P0")
_REFUSED_STATES = ("54000",)  # a limit one row passed: too big for a page, a key too big for its index


def translate(exc: BaseException) -> BaseException:
    """The exception to raise instead of `exc` (itself when it is not a database error)."""
    if isinstance(exc, ConduitError | RowsRefused):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        message = f"PostgreSQL {state}: {exc}"
        if state[:2] in _REFUSED_CLASSES or state in _REFUSED_STATES:
            return RowsRefused(message)
        if state[:2] in _TRANSIENT_CLASSES:
            return TransientError(message)
        if state in ("42P10", "42804", "42703"):  # no unique constraint for ON CONFLICT, type mismatch, no column
            return SchemaIncompatible(message)
        return ConduitError(message)
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError
                  | asyncpg.InternalClientError):
        # InternalClientError: the protocol was left mid-operation by a dropped connection.
        return TransientError(f"PostgreSQL connection lost: {exc}")
    return exc


def unreachable(exc: BaseException, where: str) -> DependencyUnreachable:
    """Connecting failed: name the server (never the password) and the cause."""
    cause = exc.__class__.__name__ if not str(exc) else str(exc)
    return DependencyUnreachable(f"cannot connect to PostgreSQL at {where}: {cause}")
