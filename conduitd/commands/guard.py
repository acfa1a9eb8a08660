"""The one funnel every CLI command runs through: an error nobody turned into a ConduitError
becomes one here, so the user reads one clear line and gets a documented exit code, never a
traceback.

    OSError (a file, a directory, a socket)      exit 1, with the path and the errno name
    ValueError (a malformed value met at run)    exit 1, with its class and message

Errors that name what went wrong precisely are raised as ConduitErrors where they happen (an
unwritable output path is a ConfigError there, exit 2); this is the net under them. The
traceback is still logged at DEBUG for whoever debugs conduitd itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

from conduitd.errors import ConduitError, leaves
from conduitd.oserrors import os_error_text

log = logging.getLogger("conduitd")
P = ParamSpec("P")
Command = Callable[P, Coroutine[Any, Any, int]]


def guarded(command: Command[P]) -> Command[P]:
    """Run `command`, turning an unexpected OSError or ValueError (also inside the exception
    groups of task groups) into a ConduitError."""

    @functools.wraps(command)
    async def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return await command(*args, **kwargs)
        except (OSError, ValueError) as exc:
            raise unexpected(exc) from None
        except BaseExceptionGroup as group:
            replacement = _from_group(group)
            if replacement is None:
                raise
            raise replacement from None

    return run


def unexpected(exc: OSError | ValueError) -> ConduitError:
    log.debug("unexpected %s", type(exc).__name__, exc_info=exc)
    if isinstance(exc, OSError):
        where = repr(str(exc.filename)) if exc.filename is not None else "a file or socket"
        return ConduitError(f"cannot use {where}: {os_error_text(exc)}")
    return ConduitError(f"{type(exc).__name__}: {exc}")


def _from_group(group: BaseExceptionGroup[BaseException]) -> ConduitError | None:
    """The ConduitError for a task group's failure when it has none of its own (the CLI turns
    groups holding ConduitErrors into their exit codes itself); None to re-raise the group."""
    found = leaves(group)
    if any(isinstance(e, ConduitError) for e in found) or not all(isinstance(e, Exception) for e in found):
        return None
    for leaf in found:
        if isinstance(leaf, OSError | ValueError):
            return unexpected(leaf)
    return None

