"""Text in a configured encoding to UTF-8, line by line where it must be: a line with bytes that
are not valid in the encoding is taken out (to go to the DLQ), never the whole block, and never
read as binary.

The block keeps one line per line of the input (a line taken out is left empty), so callers that
count lines stay aligned; `original` maps an offset in the UTF-8 block back to the input's.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

import numpy as np

from conduitd.core.lines import lf_lines, line_bounds


@dataclass(frozen=True)
class Invalid:
    """A line of the input that is not valid text in the encoding."""

    index: int
    """Which line (0-based, split at LF)."""
    end: int
    """The input offset just after the line."""
    reason: str
    payload: str
    """The line as text, its invalid bytes as backslash escapes."""


@dataclass(frozen=True)
class Transcoded:
    block: bytes
    """UTF-8, one line per input line (an invalid line is left empty)."""
    invalid: list[Invalid] = field(default_factory=list)
    ends: tuple[np.ndarray, np.ndarray] | None = None
    """(ends of lines in `block`, the same in the input), when the two differ."""

    def original(self, offset: int) -> int:
        """The input offset of an offset in `block` that ends a line (or a part of one: the
        end of that whole line, then)."""
        if self.ends is None:
            return offset
        ours, theirs = self.ends
        return int(theirs[min(int(np.searchsorted(ours, offset, side="left")), len(theirs) - 1)])


def codec_name(encoding: str) -> str:
    """Python's canonical name of an encoding that keeps line breaks as the bytes LF and CR (so a
    file can be split into lines before decoding); ValueError for others or unknown names."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    if b"\n\r".decode(info.name, errors="replace") != "\n\r" or info.name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"encoding {encoding!r} does not write line breaks as single bytes; "
                         "convert the file to UTF-8 first")
    return info.name


def to_utf8(block: bytes, encoding: str = "utf-8") -> Transcoded:
    """See the module docstring."""
    name = codec_name(encoding)
    try:
        text = block.decode(name)
    except UnicodeDecodeError:
        return _line_by_line(block, name)
    if name == "utf-8":
        return Transcoded(block)
    utf8 = text.encode("utf-8")
    if len(utf8) == len(block):
        return Transcoded(utf8)
    return Transcoded(utf8, [], (_line_ends(utf8), _line_ends(block)))


def _line_by_line(block: bytes, name: str) -> Transcoded:
    out: list[bytes] = []
    invalid: list[Invalid] = []
    end = 0
    for index, line in enumerate(lf_lines(block)):
        end += len(line)
        try:
            out.append(line.decode(name).encode("utf-8"))
        except UnicodeDecodeError as exc:
            label = "UTF-8" if name == "utf-8" else name
            record = line.rstrip(b"\r\n")
            invalid.append(Invalid(index, end, f"not valid {label} text: {exc.reason} at byte {exc.start} of the "
                                   "record", record.decode(name, errors="backslashreplace")))
            out.append(line[len(line.rstrip(b"\r\n")):])  # the line break alone keeps the lines aligned
    utf8 = b"".join(out)
    return Transcoded(utf8, invalid, (_line_ends(utf8), _line_ends(block)))


def _line_ends(block: bytes) -> np.ndarray:
    return line_bounds(block)[1]
