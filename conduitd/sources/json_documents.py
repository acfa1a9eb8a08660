"""JSON files that are one document rather than JSON lines: an array of records (compact or
pretty-printed), one pretty-printed object, or several such values one after another (the output
of `jq` without `-c`, or of `jq -c` when each value is an array).

`layout` tells the two apart from the first lines; `split` finds where each record of a document
starts and ends without building Python objects, so each record's own bytes go through the same
decoder as a JSON line (the same types, exact numbers, the same reasons for rejects). The scan is
vectorised: quotes that are not escaped delimit strings, brackets outside strings give the depth,
and commas at depth 1 of a top-level array separate its elements. The bytes must be in an
encoding where ASCII characters are single bytes (UTF-8, Latin-1, cp1252, ...).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import orjson

Layout = Literal["lines", "document"]

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes `start`..`end` of the file: a record, or text that is not one (`problem` says why)."""

    start: int
    end: int
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    spans: list[Span]
    complete: bool
    """False when the file ends inside a value (it may still be being written)."""


def layout(lines: list[bytes], encoding: str) -> Layout:
    """JSON lines, or one document? `lines`: the file's first complete lines (about 64 KiB).

    Only the text matters, not where it starts: a BOM at the start of the file, blank lines and
    whitespace before the first value are skipped. A file whose text does not start with `[` or
    `{` is JSON lines. A file whose lines are each a JSON array (one or many: `jq -c` output of
    arrays) is a stream of documents, each array's elements its records. Otherwise a file whose
    first lines are each a JSON value (two or more, or one object) is JSON lines, and so is one
    with at least two lines that are each a non-empty object (JSON lines with some broken lines:
    pretty-printers never put a non-empty object on one line). Anything else is a document: a
    compact or pretty array, a pretty object, `jq` output, or one of these still being written."""
    if lines:
        lines = [lines[0].removeprefix(_BOM), *lines[1:]]
    filled = [line for line in lines if line.strip(_WHITESPACE)]
    if not filled or filled[0].lstrip(_WHITESPACE)[0] not in _OPEN:
        return "lines"
    kinds = [_kind(line, encoding) for line in filled]
    if all(kind == "array" for kind in kinds):
        return "document"
    if None not in kinds:
        return "lines"
    return "lines" if kinds.count("object") >= 2 else "document"


def _kind(line: bytes, encoding: str) -> str | None:
    """"object" (not empty), "empty", "array" or "other" for a line that is one JSON value, None
    for one that is not."""
    try:
        value = orjson.loads(line.removeprefix(_BOM).decode(encoding))
    except (orjson.JSONDecodeError, UnicodeDecodeError, LookupError):
        return None
    if isinstance(value, dict):
        return "object" if value else "empty"
    return "array" if isinstance(value, list) else "other"


def _structure(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the brackets and commas outside strings, and the depth after each."""
    codes = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(codes == ord('"'))
    if len(quotes):
        # A quote preceded by an odd run of backslashes is escaped. Backslashes before quotes are
        # rare, so those few runs are counted one by one.
        after_backslash = quotes[(quotes > 0) & (codes[np.maximum(quotes - 1, 0)] == ord("\\"))]
        escaped = []
        for position in after_backslash.tolist():
            run = 0
            while position - run - 1 >= 0 and codes[position - run - 1] == ord("\\"):
                run += 1
            if run % 2:
                escaped.append(position)
        if escaped:
            quotes = np.setdiff1d(quotes, np.array(escaped, dtype=quotes.dtype), assume_unique=True)
    structural = np.flatnonzero(np.isin(codes, np.frombuffer(b"[]{},", dtype=np.uint8)))
    if len(quotes):
        structural = structural[np.searchsorted(quotes, structural) % 2 == 0]  # outside strings
    symbols = codes[structural]
    step = np.where(np.isin(symbols, _OPEN), 1, np.where(np.isin(symbols, _CLOSE), -1, 0))
    return structural, np.cumsum(step)


def _values(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each bracketed top-level value; an unfinished last one ends at len(data)."""
    positions, depth = _structure(data)
    symbols = np.frombuffer(data, dtype=np.uint8)[positions] if len(positions) else np.empty(0, np.uint8)
    opens = np.flatnonzero((depth == 1) & np.isin(symbols, _OPEN) & (np.r_[0, depth[:-1]] == 0))
    closes = np.flatnonzero(depth <= 0)
    values = []
    for index in opens.tolist():
        following = closes[np.searchsorted(closes, index):]
        end = int(positions[following[0]]) + 1 if len(following) else len(data)
        values.append((int(positions[index]), end))
    return values


def split(data: bytes) -> Document:
    """The records of a document and the text between them that is not one."""
    positions, depth = _structure(data)
    codes = np.frombuffer(data, dtype=np.uint8)
    spans: list[Span] = []
    complete = True
    if len(depth) and depth.min() < 0:
        # A closing bracket without its opening one: what comes before it is read, the rest is not JSON.
        first_bad = int(positions[int(np.flatnonzero(depth < 0)[0])])
        head = split(data[:first_bad])
        tail = Span(first_bad, len(data), "not valid JSON: a closing bracket without its opening one")
        return Document([*head.spans, tail], head.complete)
    cursor = 0
    for start, end in _values(data):
        _junk(data, cursor, start, spans)
        if end == len(data) and (not len(depth) or depth[-1] != 0):
            complete = False
        if codes[start] == ord("{"):
            spans.append(Span(start, end) if complete or end < len(data)
                         else Span(start, end, "the JSON document ends inside this value"))
        else:
            spans.extend(_elements(data, positions, depth, start, end, complete))
        cursor = end
    _junk(data, cursor, len(data), spans)
    return Document(spans, complete)


def _elements(data: bytes, positions: np.ndarray, depth: np.ndarray, start: int, end: int,
              complete: bool) -> list[Span]:
    """The elements of the array at `start`..`end`: split at its commas at depth 1."""
    inside = (positions > start) & (positions < end)
    commas = positions[inside & (depth == 1) & (np.frombuffer(data, dtype=np.uint8)[positions] == ord(","))]
    closed = complete or end < len(data)
    bounds = [start + 1, *(int(c) + 1 for c in commas.tolist()), end - 1 if closed else end]
    spans: list[Span] = []
    for index, (first, last) in enumerate(itertools.pairwise(bounds)):
        stop = last - 1 if index < len(bounds) - 2 else last  # without the comma after it
        left, right = _trim(data, first, stop)
        is_last = index == len(bounds) - 2
        if left == right:
            if not (len(bounds) == 2 and closed):  # `[]` is an empty array, not an empty element
                spans.append(Span(first, stop, "not valid JSON: an empty array element"))
        elif is_last and not closed:
            spans.append(Span(left, right, "the JSON document ends inside this value"))
        else:
            spans.append(Span(left, right))
    return spans


def _trim(data: bytes, start: int, end: int) -> tuple[int, int]:
    while start < end and data[start] in _WHITESPACE:
        start += 1
    while end > start and data[end - 1] in _WHITESPACE:
        end -= 1
    return start, end


def _junk(data: bytes, start: int, end: int, spans: list[Span]) -> None:
    left, right = _trim(data, start, end)
    if start == 0 and data[left:right].startswith(_BOM):
        left, right = _trim(data, left + len(_BOM), right)
    if left < right:
        spans.append(Span(left, right, "not valid JSON: text outside the document's objects and arrays"))
