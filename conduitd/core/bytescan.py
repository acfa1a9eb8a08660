"""Scans of a whole block of bytes that every decoded block of JSON lines takes before it is parsed.

Each answers one question about the block's bytes, in one pass: where the line feeds are, whether
some line holds more opening brackets than a limit (`nesting`), whether digits run long enough to
be a number a double may not hold (`jsonnumbers`). They run in a small compiled extension,
`conduitd.core._bytescan`, built with the package (`setup.py`; it is optional there: without a C
compiler the package installs without it); without the extension, the twins below (bytes.translate
and numpy, several passes each) give the same answers, and the tests hold the two to that.
On a block of 50,000 JSON lines (16 MB) the three took 58 ms in Python and 13 ms compiled (2-core
Xeon, 2026-12-01): about a second per million rows of the decoding threads' CPU.
"""

from __future__ import annotations

import numpy as np

try:
    from conduitd.core import _bytescan
except ImportError:  # built without a C compiler: the pure twins do the work
    _bytescan = None  # type: ignore[assignment]

__all__ = ["COMPILED", "digit_run", "lf_offsets", "opens_over"]

COMPILED = _bytescan is not None
"""Whether the compiled scans are in use."""


def lf_offsets(block: bytes) -> np.ndarray:
    """The offset of every LF in `block`, ascending, as int64."""
    if _bytescan is None:
        return lf_offsets_py(block)
    return np.frombuffer(_bytescan.lf_offsets(block), dtype=np.int64)


def opens_over(block: bytes, limit: int) -> bool:
    """Whether some line of `block` (split at each CR or LF) holds more than `limit` opening brackets
    (`{` or `[`, wherever they stand, strings included)."""
    if _bytescan is None:
        return opens_over_py(block, limit)
    return _bytescan.opens_over(block, limit)


def digit_run(block: bytes, length: int) -> bool:
    """Whether `block` holds `length` (at least 1) bytes in a row that are ASCII digits or points."""
    if _bytescan is None:
        return digit_run_py(block, length)
    return _bytescan.digit_run(block, length)


# -- the pure twins ---------------------------------------------------------------------------

_BRACKETS_AND_BREAKS = bytes(range(256)).translate(bytes.maketrans(b"[\r", b"{\n"))
_OTHER_BYTES = bytes(c for c in range(256) if c not in b"{[\n\r")
_DIGITS = bytes(48 if c in b"0123456789." else 32 for c in range(256))  # digits and points: '0'
_EIGHT_DIGITS = np.frombuffer(b"0" * 8, dtype=np.uint64)[0]


def lf_offsets_py(block: bytes) -> np.ndarray:
    offsets: np.ndarray = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10).astype(np.int64, copy=False)
    return offsets


def opens_over_py(block: bytes, limit: int) -> bool:
    """One C pass keeps only brackets and line breaks, then one search for a long enough run of
    brackets. (A numpy pass per byte class cost four times as much on blocks of JSON lines.)"""
    compact = block.translate(_BRACKETS_AND_BREAKS, _OTHER_BYTES)
    if len(compact) <= limit:
        return False
    return compact.find(b"{" * (limit + 1)) >= 0


def digit_run_py(block: bytes, length: int) -> bool:
    if length < 1:
        raise ValueError("length must be at least 1")
    shapes = block.translate(_DIGITS)
    return _may_have_a_long_run(shapes, length) and shapes.find(b"0" * length) >= 0


def _may_have_a_long_run(shapes: bytes, length: int) -> bool:
    """Whether `shapes` may hold a run of `length` '0's: a cheap screen before the search (a find
    of 19 zeros steps almost byte by byte through text full of digits).

    A run of 15 or more covers at least one whole aligned 8-byte word, found by one uint64
    compare. A whole word with a whole neighbour (a run of 16 or more), or at either end, says
    maybe; a lone whole word's run is exactly the zeros that end the word before it, its 8, and
    those that start the word after it."""
    if length < 15:
        return True
    words = len(shapes) // 8
    whole = np.flatnonzero(np.frombuffer(shapes, dtype=np.uint64, count=words) == _EIGHT_DIGITS)
    if not len(whole):
        return False
    if whole[0] == 0 or whole[-1] >= words - 1 or (np.diff(whole) == 1).any():
        return True
    by_word = np.frombuffer(shapes, dtype=np.uint8, count=8 * words).reshape(words, 8)
    before, after = by_word[whole - 1] == 48, by_word[whole + 1] == 48  # neither is whole (only these
    # words are compared: comparing every byte of the block cost more than the rest of the screen)
    trailing = np.argmin(before[:, ::-1], axis=1)  # zeros that end the word before
    leading = np.argmin(after, axis=1)  # zeros that start the word after
    return bool((trailing + 8 + leading >= length).any())
