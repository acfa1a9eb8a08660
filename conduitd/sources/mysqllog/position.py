"""Binlog coordinates and the source's positions. Pure.

A coordinate is (file, offset): `binlog.000042` and the byte after an event. Files of one server
sort by their numeric suffix (`binlog.000999` < `binlog.1000000` after the server widened it), so
a coordinate compares as (suffix, offset).

Positions (JSON, committed with the rows):

    {"phase": "snapshot", "file": F, "pos": P, "gtid": G, "after": [key texts]}
        the initial snapshot is being read; F:P is where the binlog stood at the snapshot (the log
        starts there), `after` the key of the last row handed over;
    {"phase": "log", "file": F, "pos": P, "gtid": G}
        every change before F:P is handed over, F:P the end of a transaction (or the snapshot's
        coordinate); G the server's GTID of that transaction (MariaDB `domain-server-seq`), or null;
    ... plus "done": k
        the transaction starting at F:P is larger than a chunk: its first k changes of this table
        are handed over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SUFFIX = re.compile(r"\.(\d+)$")


@dataclass(frozen=True, slots=True, order=False)
class Coordinate:
    file: str
    pos: int

    def key(self) -> tuple[int, str, int]:
        match = _SUFFIX.search(self.file)
        return (int(match[1]) if match else -1, self.file, self.pos)

    def __le__(self, other: Coordinate) -> bool:
        return self.key() <= other.key()

    def __lt__(self, other: Coordinate) -> bool:
        return self.key() < other.key()

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


def coordinate(position: dict[str, Any]) -> Coordinate:
    return Coordinate(str(position["file"]), int(position["pos"]))


def log_position(at: Coordinate, gtid: str | None, done: int = 0) -> dict[str, Any]:
    position: dict[str, Any] = {"phase": "log", "file": at.file, "pos": at.pos, "gtid": gtid}
    if done:
        position["done"] = done
    return position


def snapshot_position(at: Coordinate, gtid: str | None, after: list[str]) -> dict[str, Any]:
    return {"phase": "snapshot", "file": at.file, "pos": at.pos, "gtid": gtid, "after": after}


def bytes_behind(at: Coordinate, logs: list[tuple[str, int]]) -> int | None:
    """How many binlog bytes the server holds after `at` (`SHOW BINARY LOGS`: name, size); None
    when `at`'s file is no longer among them (purged)."""
    names = [name for name, _ in logs]
    if at.file not in names:
        return None
    index = names.index(at.file)
    return max(0, logs[index][1] - at.pos) + sum(size for _, size in logs[index + 1:])
