"""S3 objects as the file source reads them: listed under a prefix, by a glob or by name, and
opened for a pass like a file (through pyarrow's S3 filesystem, in ranges).

A partition is one object, named `s3://bucket/key`. An object is never appended to, only
replaced, so its ETag is its identity (`file_identity`): the position is `{"offset": N, "etag":
E}` (`{"row": N, "etag": E}` for Parquet), and a stored position with another ETag is read again
from the start with a warning. Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow.fs as pafs

from conduitd.config import FileSourceConfig
from conduitd.s3settings import SCHEME, s3_filesystem
from conduitd.sources.file_identity import OpenFile

Stamp = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class OpenObject(OpenFile):
    """An S3 object opened for one read pass: `handle` is pyarrow's random-access S3 file, whose
    size and ETag were taken when it was opened (one HEAD); each read is one ranged GET."""

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        data: bytes = self.handle.read_at(length, offset)  # type: ignore[attr-defined]
        return data


class BucketMissing(FileNotFoundError):
    """The configured bucket does not exist, or these credentials cannot see it."""


class ObjectStore:
    """The objects one file source reads, and the stamp of each as last listed."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config
        self.fs = s3_filesystem(config, f"source {config.name!r}")
        self.listed: dict[str, Stamp] = {}
        """Per object (s3://bucket/key): size and modification time at the last listing; while a
        listing shows the same, the object has not been replaced (to the second: S3's clock)."""

    def discover(self, accept: Callable[[str], bool]) -> list[str] | None:
        """The objects to read, in name order: those under a prefix (`s3://bucket/in/` or a key
        that is a "folder") that `accept` by name, those matching a glob (`*` stays within one
        `/` level), or the one object named. None when a named object does not exist. Raises
        BucketMissing, or OSError when S3 cannot be reached."""
        path = self.config.path[len(SCHEME):]
        if glob.has_magic(path):
            fixed = path[: min(path.find(c) for c in "*?[" if c in path)]
            pattern = PurePosixPath(path)
            found = [i for i in self._list(fixed.rsplit("/", 1)[0] if "/" in fixed else fixed)
                     if len(PurePosixPath(i.path).parts) == len(pattern.parts) and PurePosixPath(i.path).match(path)]
        elif path.endswith("/") or "/" not in path:
            found = [i for i in self._list(path.rstrip("/")) if accept(SCHEME + i.path)]
        else:
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                found = [info]
            elif info.type == pafs.FileType.Directory:
                found = [i for i in self._list(path) if accept(SCHEME + i.path)]
            else:
                self._check_bucket(path)
                return None
        self.listed = {SCHEME + i.path: (0, int(i.size or 0), int(i.mtime_ns or 0), 0) for i in found}
        return sorted(self.listed)

    def _list(self, prefix: str) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        files = [i for i in infos if i.type == pafs.FileType.File]
        if not files:
            self._check_bucket(prefix)  # an unknown bucket lists as empty
        return files

    def _check_bucket(self, path: str) -> None:
        bucket = path.split("/", 1)[0]
        if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise BucketMissing(f"the bucket {bucket!r} does not exist or cannot be seen with these credentials")

    def open(self, name: str) -> OpenObject:
        """Open the object `name` (s3://bucket/key); FileNotFoundError when it is gone."""
        handle = self.fs.open_input_file(name[len(SCHEME):])
        try:
            size = int(handle.size())
            metadata = handle.metadata()
        except OSError:
            handle.close()
            raise
        etag = metadata.get("ETag") or metadata.get("Last-Modified", b"") + b"/" + str(size).encode()
        stamp = self.listed.get(name, (0, size, 0, 0))
        return OpenObject(name, handle, 0, size, stamp, etag.decode("utf-8", "replace").strip('"'))
