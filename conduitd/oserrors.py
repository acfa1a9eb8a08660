"""OSErrors told plainly, and the check that an output path of the config can be written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from conduitd.errors import ConfigError


def os_error_text(exc: OSError) -> str:
    """`No space left on device (ENOSPC)`: the reason and its errno name, without Python's repr."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = (exc.strerror or os.strerror(exc.errno)) if exc.errno else (str(exc) or type(exc).__name__)
    return f"{reason} ({name})" if name else reason


def unwritable(path: str | Path, what: str, exc: OSError) -> ConfigError:
    """The error for an output path of the config or the command line that cannot be written."""
    return ConfigError(f"{what} {str(path)!r} cannot be written: {os_error_text(exc)}")


def check_writable(path: str | Path, what: str) -> None:
    """Raise ConfigError unless `path` can be appended to (creating it and its directories, as
    the first real write would). Permissions alone do not tell (root passes them, a read-only
    mount or a directory in the way does not), so this opens the file the way writes will."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab"):
            pass
    except OSError as exc:
        raise unwritable(path, what, exc) from None
