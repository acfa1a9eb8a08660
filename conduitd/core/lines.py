"""Lines of a block of text records: where they end, how long their records are, and the
pieces of a DLQ entry for one (shared by the JSON lines and CSV decoders)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from conduitd.core.bytescan import lf_offsets
from conduitd.core.records import Position

PositionAt = Callable[[int], Position]
"""Maps the byte offset just after a record (relative to the block) to its position."""

PAYLOAD_LIMIT = 65536
"""Bytes of an oversized or too deeply nested record kept as its DLQ payload."""


def payload_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def line_bounds(block: bytes, newlines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (after the LF) of every line; a last line without LF ends the block.
    `newlines`: the offset of every LF in `block`, where the caller knows them (a pass saved)."""
    ends = (lf_offsets(block) if newlines is None else newlines) + 1
    if block and not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    starts = np.concatenate(([0], ends[:-1])) if len(ends) else np.empty(0, dtype=np.int64)
    return starts.astype(np.int64), ends.astype(np.int64)


def record_sizes(block: bytes, newlines: np.ndarray | None = None) -> np.ndarray:
    """Bytes of every line's record, without its line break (LF or CR LF); `newlines` as for
    `line_bounds`."""
    starts, ends = line_bounds(block, newlines)
    data = np.frombuffer(block, dtype=np.uint8)
    has_lf = data[ends - 1] == 10 if len(ends) else np.zeros(0, dtype=bool)
    lf = has_lf.astype(np.int64)
    before = np.maximum(ends - 2, 0)
    cr = has_lf & (ends - starts >= 2) & (data[before] == 13) if len(ends) else lf.astype(bool)
    sizes: np.ndarray = ends - starts - lf - cr.astype(np.int64)
    return sizes


def oversize_reason(size: int, limit: int) -> str:
    return f"record of {size} bytes is over max_record_bytes ({limit})"


def lf_lines(block: bytes) -> list[bytes]:
    """Lines split at LF, each with its LF (the last one may lack it); no empty last line."""
    lines = block.split(b"\n")
    last = lines.pop()
    return [line + b"\n" for line in lines] + ([last] if last else [])
