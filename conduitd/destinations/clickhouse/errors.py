"""ClickHouse errors translated to the tree of `conduitd.errors`, by the server's error code
(`Code: N` of chdb's and the server's exceptions, clickhouse-connect's `code`), never by text."""

from __future__ import annotations

import asyncio
import re

from conduitd.destinations.base import RowsRefused
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, SchemaIncompatible, TransientError

REFUSED = {6, 27, 32, 38, 41, 53, 69, 70, 72, 321, 469}
"""Values a column cannot take (parse, conversion, range, type mismatch, a CHECK constraint)."""
TRANSIENT = {159, 160, 202, 209, 210, 236, 242, 252, 285, 319, 394, 425, 473, 999}
"""Timeouts, network, too many queries or parts, read-only tables (a replica restarting), aborts."""
ACCESS = {192, 193, 194, 195, 497, 516}
MISSING = {16, 47, 60, 81}
_CODE = re.compile(r"\bCode: (\d+)\.")


def code_of(exc: BaseException) -> int | None:
    """The ClickHouse error code of a driver error, or None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return code
    found = _CODE.search(str(exc))  # chdb and the HTTP interface carry the code in a fixed "Code: N." form
    return int(found.group(1)) if found else None


def _connection_lost(exc: BaseException) -> bool:
    kind = type(exc)
    return kind.__module__.startswith("clickhouse_connect") and kind.__name__ == "OperationalError"


def translate(exc: BaseException) -> BaseException:
    """The exception to raise instead of `exc` (itself when it is no database error)."""
    if isinstance(exc, ConduitError | RowsRefused | asyncio.CancelledError) or not isinstance(exc, Exception):
        return exc
    code = code_of(exc)
    message = " ".join(str(exc).split())[:2000] or type(exc).__name__
    if _connection_lost(exc) or isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(f"ClickHouse connection lost: {message}")
    if code is None:
        return exc
    if code in REFUSED:
        return RowsRefused(message)
    if code in TRANSIENT:
        return TransientError(message)
    if code in ACCESS:
        return ConfigError(f"{message} (check the destination's user, password and privileges)")
    if code in MISSING:
        return SchemaIncompatible(message)
    return ConduitError(message)


def unreachable(exc: BaseException, where: str) -> ConduitError:
    """Connecting failed: name the place (never the password) and the cause."""
    translated = translate(exc)
    if isinstance(translated, ConduitError) and not isinstance(translated, TransientError):
        return ConfigError(f"cannot open ClickHouse ({where}): {translated}")
    return DependencyUnreachable(f"cannot connect to ClickHouse ({where}): {type(exc).__name__}: {exc}"[:2000])
