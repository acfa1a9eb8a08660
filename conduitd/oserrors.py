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


def writable_problem(path: str | Path) -> str | None:
    """Why `path` could not be appended to (created with its directories if missing), or None;
    unlike `check_writable` this writes nothing, for `validate`."""
    target = Path(path)
    try:
        if target.exists():
            if target.is_dir():
                return os_error_text(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
            # O_NONBLOCK: a FIFO without a reader fails at once instead of blocking.
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
            return None
        parent = target.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent}: " + os_error_text(NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            return f"{parent}: " + os_error_text(OSError(errno.EROFS, os.strerror(errno.EROFS)))
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{parent}: " + os_error_text(PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    except OSError as exc:
        return os_error_text(exc)
    return None
