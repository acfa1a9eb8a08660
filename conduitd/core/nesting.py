"""How deeply JSON text nests, found without parsing it (a parser may recurse once per level).

pyarrow's JSON reader crashes the process (a stack overflow) on a line nested some 100,000
levels deep, and several later stages (serialising a record for the DLQ with orjson, which stops
at 255 levels; SQLite's JSON functions, which stop at 1,000) cannot take what it reads. So one
limit, `MAX_DEPTH`, is enforced before any parser sees a line: a deeper line is rejected with
that reason, and everything downstream may rely on at most `MAX_DEPTH` levels.

The scan is vectorised over the whole block. It follows JSON's lexical rules (strings, escapes)
exactly up to the first byte that makes a line invalid, which is as far as any parser reads, so
it never under-states the depth a parser would reach; what it says beyond that point does not
matter (the parser rejects the line there).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from conduitd.core.bytescan import opens_over

MAX_DEPTH = 128
"""Levels of objects and arrays a record may have, the record itself being level 1 (serde_json's
default; orjson serialises at most 254, and the DLQ wraps a record)."""

_OPEN = (ord("{"), ord("["))
_CLOSE = (ord("}"), ord("]"))
_QUOTE, _BACKSLASH, _LF, _CR = ord('"'), ord("\\"), ord("\n"), ord("\r")


def too_deep(block: bytes, limit: int = MAX_DEPTH) -> np.ndarray:
    """Sorted byte offsets, into `block`, of the starts of the lines (split at each CR or LF)
    that nest deeper than `limit`; empty in the usual case, found by one pass over the bytes."""
    if not opens_over(block, limit):  # one pass; in the usual case the only one
        return np.empty(0, dtype=np.int64)
    data = np.frombuffer(block, dtype=np.uint8)
    suspects = _lines_with_many_opens(data, limit)
    if suspects is None:
        return np.empty(0, dtype=np.int64)
    # Only the lines that could be too deep are scanned, joined (each piece is a whole line, so
    # a line found is a piece, found at the piece's start).
    found = _scan(b"\n".join(block[start:end] for start, end in suspects), limit)
    piece_starts = np.cumsum([0] + [end - start + 1 for start, end in suspects[:-1]])
    index = np.searchsorted(piece_starts, found, side="right") - 1
    deep: np.ndarray = np.array([suspects[i][0] for i in index], dtype=np.int64) + (found - piece_starts[index])
    return np.unique(deep)


def _lines_with_many_opens(data: np.ndarray, limit: int) -> list[tuple[int, int]] | None:
    """(start, end) of the lines (split at CR or LF) with more than `limit` opening brackets,
    or None: a line with fewer cannot be deeper, whatever its strings hold."""
    opens = np.flatnonzero((data == _OPEN[0]) | (data == _OPEN[1]))
    breaks = np.flatnonzero((data == _LF) | (data == _CR))
    counts = np.bincount(np.searchsorted(breaks, opens), minlength=len(breaks) + 1)
    many = np.flatnonzero(counts > limit)
    if not len(many):
        return None
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(data)]))
    return [(int(starts[i]), int(ends[i])) for i in many]


def _scan(block: bytes, limit: int) -> np.ndarray:
    """The exact scan of the module docstring, over a whole block."""
    data = np.frombuffer(block, dtype=np.uint8)
    size = len(data)
    index = np.arange(size, dtype=np.int64)
    breaks = (data == _LF) | (data == _CR)
    # Where each line starts: the byte after the last line break at or before every position.
    line_start = np.maximum.accumulate(np.where(breaks, index + 1, 0))
    quotes = _unescaped_quotes(data, index)
    # A byte is inside a string when an odd number of quotes precede it on its line.
    quotes_before = np.cumsum(quotes) - quotes
    at_start = _value_at(quotes_before, line_start, size)
    outside = (quotes_before - at_start) % 2 == 0
    step = np.zeros(size, dtype=np.int64)
    step[((data == _OPEN[0]) | (data == _OPEN[1])) & outside] = 1
    step[((data == _CLOSE[0]) | (data == _CLOSE[1])) & outside] = -1
    depth = np.cumsum(step)
    depth_before_line = _value_at(depth - step, line_start, size)
    deep = np.flatnonzero((depth - depth_before_line > limit) & ~breaks)
    starts: np.ndarray = np.unique(line_start[deep])
    return starts


def _unescaped_quotes(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Quotes not escaped by a backslash: those after an even run of backslashes (outside a
    string a backslash is invalid JSON, so the parser stops before it matters)."""
    quotes: np.ndarray = data == _QUOTE
    where = np.flatnonzero(quotes)
    if not len(where):
        return quotes
    not_backslash = np.where(data != _BACKSLASH, index, -1)
    last_other = np.maximum.accumulate(not_backslash)
    before = where - 1
    run = np.where(before >= 0, before - last_other[np.maximum(before, 0)], 0)
    quotes[where[run % 2 == 1]] = False
    return quotes


def _value_at(values: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """values[positions], where a position past the end (a line not begun yet) reads as 0."""
    padded: np.ndarray = np.append(values, 0)[np.minimum(positions, size)]
    return padded


def value_depth(value: object) -> int:
    """Levels of objects and arrays in a parsed JSON value, walked without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: object = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)  # type: ignore[attr-defined]
    return deepest


def type_depth(kind: pa.DataType) -> int:
    """Levels of nesting of an Arrow type (each struct, list or map level counts one, the
    entries of a map two), without recursion: a column of a record at `MAX_DEPTH` has
    `MAX_DEPTH - 1`."""
    deepest = 0
    stack: list[tuple[pa.DataType, int]] = [(kind, 0)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((current.field(i).type, level + 1) for i in range(current.num_fields))
    return deepest
