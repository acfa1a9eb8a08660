"""A result's rows read as the server sent them (text protocol packets), straight from asyncmy's
receive buffer, and cut into Arrow columns with numpy: no Python object per value.

Why: asyncmy makes a `str` per value and a tuple per row, and Arrow then walks them again: for a
9-column table that was ~1.6 s of CPU per million rows, of a pipeline that does ~4. Here a Python
loop only hops from packet header to packet header (~0.25 µs a row); the fields (length-encoded
strings, 0xFB for NULL) are walked one column at a time over all rows at once, and each column is
gathered by Arrow's `take` from one array of byte ranges. The bytes are the server's own: text
stays text (checked as UTF-8 when it becomes a string column), binary stays binary.

asyncmy keeps what the protocol needs beside it: the result's end (EOF/OK packet), an error packet
and a row of 16 MB or more (split over several packets) are left to asyncmy's own reader; such a
row comes back as values and is written out again as the packet it was.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

_NULL, _TWO, _THREE, _EIGHT = 0xFB, 0xFC, 0xFD, 0xFE
_JUMBO = 0xFFFFFF
"""A packet of this payload length continues in the next one (a row of 16 MB or more)."""
Ints = np.ndarray[Any, np.dtype[np.int64]]


@dataclass
class WireRows:
    """Whole row packets (4-byte header, then one length-encoded value per column) and where
    each starts."""

    width: int
    pieces: list[bytes] = field(default_factory=list)
    starts: list[Ints] = field(default_factory=list)
    count: int = 0
    size: int = 0

    def __len__(self) -> int:
        return self.count

    def add(self, data: bytes, starts: Ints, base: int = 0) -> None:
        """`data`, whose packets start at `starts` less `base`."""
        self.starts.append(starts + (self.size - base))
        self.pieces.append(data)
        self.size += len(data)
        self.count += len(starts)

    def add_values(self, row: tuple[Any, ...]) -> None:
        """A row asyncmy read (texts, bytes, None), as its packet (the header's length unused)."""
        parts = [b"\0\0\0\0"]
        for value in row:
            if value is None:
                parts.append(bytes([_NULL]))
                continue
            data = value.encode() if isinstance(value, str) else bytes(value)
            parts += [_length(len(data)), data]
        self.add(b"".join(parts), np.zeros(1, np.int64))

    def joined(self) -> tuple[bytes, Ints]:
        if len(self.pieces) > 1:
            self.pieces, self.starts = [b"".join(self.pieces)], [np.concatenate(self.starts)]
        return (self.pieces[0], self.starts[0]) if self.pieces else (b"", np.zeros(0, np.int64))

    def row(self, index: int) -> tuple[bytes | None, ...]:
        """One row's values (bytes; None for NULL)."""
        data, starts = self.joined()
        pos = int(starts[index]) + 4
        values: list[bytes | None] = []
        for _ in range(self.width):
            head = data[pos]
            if head == _NULL:
                values.append(None)
                pos += 1
                continue
            size, pos = (head, pos + 1) if head < _NULL else \
                (int.from_bytes(data[pos + 1:pos + 1 + _WIDTHS[head]], "little"), pos + 1 + _WIDTHS[head])
            values.append(data[pos:pos + size])
            pos += size
        return tuple(values)

    def columns(self) -> list[pa.Array]:
        """Each column's values as one large_binary array (nulls where the server sent NULL)."""
        data, starts = self.joined()
        n, width = len(starts), self.width
        if n == 0:
            return [pa.array([], pa.large_binary()) for _ in range(width)]
        buf = np.frombuffer(data, np.uint8)
        bounds = np.empty((n, 2 * width + 1), np.int64)  # packet start, then each value's start and end
        bounds[:, 0] = starts
        pos = starts + 4
        nulls: list[np.ndarray[Any, np.dtype[np.bool_]] | None] = []
        try:
            for j in range(width):
                head = buf[pos]
                special = head >= _NULL
                if special.any():
                    null, skip, size = _special(buf, pos, head, special)
                    nulls.append(null)
                    bounds[:, 2 * j + 1] = pos + skip
                    pos = pos + skip + size
                else:
                    nulls.append(None)
                    pos = pos + 1
                    bounds[:, 2 * j + 1] = pos
                    pos = pos + head
                bounds[:, 2 * j + 2] = pos
        except IndexError:
            raise pa.ArrowInvalid(f"a row packet holds fewer than {width} values") from None
        if not np.array_equal(pos, np.append(starts[1:], len(data))):
            raise pa.ArrowInvalid(f"a row packet does not hold exactly {width} values")
        ranges = pa.LargeBinaryArray.from_buffers(pa.large_binary(), bounds.size - 1,
                                                  [None, pa.py_buffer(bounds), pa.py_buffer(data)])
        first = np.arange(n, dtype=np.int64) * (2 * width + 1)
        return [ranges.take(pa.array(first + (2 * j + 1), mask=nulls[j])) for j in range(width)]


_WIDTHS = {_TWO: 2, _THREE: 3, _EIGHT: 8}


def _special(buf: np.ndarray[Any, np.dtype[np.uint8]], pos: Ints, head: np.ndarray[Any, np.dtype[np.uint8]],
             special: np.ndarray[Any, np.dtype[np.bool_]]) -> tuple[np.ndarray[Any, np.dtype[np.bool_]] | None,
                                                                     Ints, Ints]:
    """(nulls or None, header bytes, value bytes) of one column where some values are NULL or
    251 bytes long or more (a 2, 3 or 8-byte length follows the first byte)."""
    null = head == _NULL
    size = np.where(special, 0, head).astype(np.int64)
    skip = np.ones(len(pos), np.int64)
    longer = np.nonzero(head > _NULL)[0]
    if len(longer):
        at, kind = pos[longer], head[longer]
        if (kind > _EIGHT).any():
            raise pa.ArrowInvalid("invalid length-encoded value in a row packet (0xff)")
        length = buf[at + 1].astype(np.int64) | (buf[at + 2].astype(np.int64) << 8)
        length = np.where(kind == _TWO, length, length | (buf[at + 3].astype(np.int64) << 16))
        size[longer], skip[longer] = length, np.where(kind == _TWO, 3, 4)
        for i in longer[kind == _EIGHT]:  # 16 MB or more: a few at most
            where = int(pos[i])
            size[i], skip[i] = int.from_bytes(buf[where + 1:where + 9].tobytes(), "little"), 9
    return (null if null.any() else None), skip, size




def _length(size: int) -> bytes:
    if size < _NULL:
        return bytes([size])
    for kind, width in _WIDTHS.items():
        if size < 1 << (8 * width):
            return bytes([kind]) + size.to_bytes(width, "little")
    raise ValueError(size)


def _scan(buf: bytearray, pos: int, end: int) -> tuple[Ints, int]:
    """Starts of the whole packets in `buf[pos:end]` (up to one of 16 MB or more), and where the
    first one not whole starts."""
    found = array("q")
    add = found.append
    while end - pos >= 4:
        size = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16)
        after = pos + 4 + size
        if after > end or size == _JUMBO:
            break
        add(pos)
        pos = after
    return np.frombuffer(found, np.int64) if found else np.zeros(0, np.int64), pos


_INTERNALS = ("_proto", "_next_seq_id", "_fill_buffer")
_BUFFER = ("buffer", "pos", "length")


def wire_readable(conn: Any) -> bool:
    """Whether `conn` has the asyncmy internals `read_rows` takes packets from (asyncmy 0.2.x, as
    pinned). Without them rows are read through asyncmy's own cursor: slower, the same values."""
    return all(hasattr(conn, name) for name in _INTERNALS) and all(hasattr(conn._proto, n) for n in _BUFFER)


async def read_rows(conn: Any, cursor: Any, width: int, *, from_wire: bool | None = None) -> WireRows:
    """The rows of the unbuffered (SSCursor) result `cursor` has just started on `conn`, to its end.
    Row packets are taken as they are; anything else (the end, an error, a row of 16 MB or more)
    is read by asyncmy, which raises what it has to. `from_wire=False` (or a connection without
    the internals, see `wire_readable`) reads every row through asyncmy."""
    rows = WireRows(width)
    if not (wire_readable(conn) if from_wire is None else from_wire):
        while block := await cursor.fetchmany(10_000):
            for row in block:
                rows.add_values(tuple(row))
        return rows
    proto = conn._proto
    while True:
        buf, pos, end = proto.buffer, proto.pos, proto.length
        starts, stop = _scan(buf, pos, end)
        keep = _rows_only(buf, starts, conn._next_seq_id)
        if keep:
            stop = int(starts[keep]) if keep < len(starts) else stop
            rows.add(bytes(memoryview(buf)[pos:stop]), starts[:keep], pos)
            proto.pos = stop
            conn._next_seq_id = (conn._next_seq_id + keep) & 0xFF
            continue
        size = _size(buf, pos) if end - pos >= 4 else -1
        if len(starts) or size == _JUMBO:
            row = await cursor.fetchone()  # the end (None), an error (raised) or a row of 16 MB or more
            if row is None:
                return rows
            rows.add_values(tuple(row))
            continue
        await conn._fill_buffer(4 if size < 0 else 4 + size)


def _size(buf: bytearray, pos: int) -> int:
    return buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16)


def _rows_only(buf: bytearray, starts: Ints, seq: int) -> int:
    """How many of the leading packets are rows: in sequence, not empty, and not an EOF/OK (0xFE)
    or error (0xFF) packet (a row's first byte is a length-encoded value's, and 0xFE would need a
    packet of 16 MB)."""
    if not len(starts):
        return 0
    view = np.frombuffer(buf, np.uint8)
    at = starts
    size = view[at].astype(np.int64) | (view[at + 1].astype(np.int64) << 8) | (view[at + 2].astype(np.int64) << 16)
    expected = (seq + np.arange(len(at))) & 0xFF
    bad = (view[at + 3] != expected) | (size == 0) | (view[np.minimum(at + 4, len(view) - 1)] >= _EIGHT)
    del view
    first = np.argmax(bad) if bad.any() else len(starts)
    return int(first)
