"""Where a file destination's files live: a local directory or an S3 prefix, through pyarrow.fs.
Blocking calls (run them in a worker thread). Paths given and returned are relative to the root.

Local files are made durable before they count: data is fsynced, a rename is followed by an
fsync of its directory. S3 has no rename: a PUT is atomic, so objects are written under their
final names (`renames` is False) and the state object published last.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs

from conduitd.destinations.files.settings import FileDestinationConfig
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, TransientError
from conduitd.oserrors import os_error_text
from conduitd.s3settings import s3_filesystem

Fill = Callable[[Any], None]
"""Writes a file's bytes to the output stream it is given."""


class Storage:
    """See the module docstring."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, *, local: bool, shown: str) -> None:
        self.fs = filesystem
        self.root = root.rstrip("/")
        self.local = local
        self.renames = local
        self.shown = shown
        """The root as the config names it (for messages)."""

    def full(self, name: str) -> str:
        """The filesystem path of `name` (`../x` is beside the root: a single output file)."""
        return posixpath.normpath(f"{self.root}/{name}") if name else self.root

    def error(self, exc: BaseException, doing: str) -> ConduitError:
        """`exc` (an OSError or a pyarrow error) as conduitd's error, naming what was done."""
        text = os_error_text(exc) if isinstance(exc, OSError) and exc.errno else str(exc)
        message = f"file destination {self.shown}: {doing}: {text}"
        if isinstance(exc, PermissionError) or "ACCESS_DENIED" in text.upper().replace(" ", "_"):
            return ConfigError(message)
        return TransientError(message)

    def ensure_root(self) -> None:
        if self.local:
            self.fs.create_dir(self.root, recursive=True)
        else:
            bucket = self.root.split("/", 1)[0]
            if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise DependencyUnreachable(f"file destination {self.shown}: the bucket {bucket!r} does not exist "
                                            "or cannot be seen with these credentials")

    def write(self, name: str, fill: Fill) -> None:
        """Write the file `name` whole (through `fill`) and make it durable."""
        path = self.full(name)
        if self.local:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as stream:
            fill(stream)
        if self.local:
            _fsync(path)

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.full(name)) as stream:
                data: bytes = stream.read()
                return data
        except FileNotFoundError:
            return None

    def open_input(self, name: str) -> Any:
        return self.fs.open_input_file(self.full(name))

    def exists(self, name: str) -> bool:
        return bool(self.fs.get_file_info(self.full(name)).type == pafs.FileType.File)

    def rename(self, old: str, new: str) -> None:
        """Local only: an atomic rename, durable once this returns."""
        self.fs.move(self.full(old), self.full(new))
        _fsync(self.full(new).rsplit("/", 1)[0])

    def copy(self, old: str, new: str) -> None:
        """Make `new` a durable copy of `old`: a hard link locally (no bytes copied; `old` may be
        deleted after), a server-side copy on S3."""
        if self.local:
            self.fs.create_dir(self.full(new).rsplit("/", 1)[0], recursive=True)
            try:
                os.link(self.full(old), self.full(new))
            except OSError:  # a filesystem without hard links
                self.fs.copy_file(self.full(old), self.full(new))
                _fsync(self.full(new))
            _fsync(self.full(new).rsplit("/", 1)[0])
        else:
            self.fs.copy_file(self.full(old), self.full(new))

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.full(name))

    def files(self) -> list[str]:
        """Every file under the root, relative to it."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        prefix = len(self.root) + 1
        return [info.path[prefix:] for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_storage(config: FileDestinationConfig, root: str) -> Storage:
    """The storage of `root` (a local directory, or s3://bucket/prefix with the config's S3 settings)."""
    if not root.startswith("s3://"):
        return Storage(pafs.LocalFileSystem(), os.path.abspath(root), local=True, shown=repr(config.path))
    filesystem = s3_filesystem(config, f"file destination {config.name!r}")
    return Storage(filesystem, root[len("s3://"):], local=False, shown=repr(config.path))
