"""A decoder of PostgreSQL's `pgoutput` logical replication messages, protocol version 1 (the
"Logical Replication Message Formats" chapter of the PostgreSQL manual). Pure: bytes in, values
out; it knows nothing of connections or slots.

Every message starts with one type byte. Integers are big-endian, strings end with a NUL byte.
A TupleData is Int16 column count, then per column a byte: `n` null, `u` an unchanged TOASTed
value (not sent), `t` Int32 length and the value as text (`b`, binary, only with the `binary`
option, which the project does not ask for)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

Value = str | None
"""A column as text, or None for SQL NULL."""


class Unchanged:
    """A TOASTed value the update left alone, which the server does not send again."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()
Tuple = tuple[Value | Unchanged, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    """The LSN of the transaction's commit record."""
    commit_time: int
    """Microseconds since 2000-01-01 UTC."""
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    """The LSN just after the transaction: the position to resume (and advance a slot) to."""
    commit_time: int


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    key: bool
    """Part of the replica identity (the primary key by default)."""


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str
    """`d` default (the key), `f` full, `i` an index, `n` nothing."""
    columns: tuple[Column, ...]
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The columns' names, in order (computed once: every change zips them with its values)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))


@dataclass(frozen=True, slots=True)
class Insert:
    relid: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    relid: int
    old: Tuple | None
    """The old key (`K`) or whole old row (`O`, replica identity full); None when the key did not change."""
    new: Tuple


@dataclass(frozen=True, slots=True)
class Delete:
    relid: int
    old: Tuple
    """The key columns (the others null), or the whole row under replica identity full."""


@dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class Other:
    """A message this project does not act on (Origin, Type, logical decoding Message)."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Other


class DecodeError(ValueError):
    """The bytes are not a well-formed pgoutput message."""


_U16 = struct.Struct("!H").unpack_from
_I32 = struct.Struct("!i").unpack_from
_U32 = struct.Struct("!I").unpack_from
_NULL, _UNCHANGED, _TEXT = ord("n"), ord("u"), ord("t")


def _tuple_at(data: bytes, at: int) -> tuple[Tuple, int]:
    """The TupleData at `at`, and where it ends: the hot loop of decoding, one pass over the bytes
    (struct.error on a short message is turned into DecodeError by `decode`)."""
    (count,) = _U16(data, at)
    at += 2
    end = len(data)
    values: list[Value | Unchanged] = []
    append = values.append
    for _ in range(count):
        if at >= end:
            raise DecodeError(f"message ends early at byte {at}")
        kind = data[at]
        if kind == _TEXT:
            (size,) = _I32(data, at + 1)
            at += 5
            stop = at + size
            if size < 0 or stop > end:
                raise DecodeError(f"a value of {size} bytes runs past the message")
            append(data[at:stop].decode())
            at = stop
        elif kind == _NULL:
            append(None)
            at += 1
        elif kind == _UNCHANGED:
            append(UNCHANGED)
            at += 1
        else:
            raise DecodeError(f"column kind {chr(kind)!r} (binary values are not asked for)")
    return tuple(values), at


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise DecodeError(f"message ends early at byte {self.at}")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return int(value)

    def byte(self) -> str:
        return chr(self.take("!B"))

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise DecodeError("a string without its terminating NUL")
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text

    def raw(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise DecodeError(f"a value of {size} bytes runs past the message")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def tuple(self) -> Tuple:
        values, self.at = _tuple_at(self.data, self.at)
        return values


def decode(data: bytes) -> Message:
    """One pgoutput message (protocol version 1)."""
    if not data:
        raise DecodeError("an empty message")
    try:
        if data[0] == 73 and data[5:6] == b"N":  # `I`nsert, the common case, without the reader
            values, _ = _tuple_at(data, 6)
            return Insert(_U32(data, 1)[0], values)
        return _decode(data)
    except struct.error:
        raise DecodeError("message ends early") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a value that is not UTF-8: {exc}") from None


def _decode(data: bytes) -> Message:
    r = _Reader(data)
    kind = r.byte()
    if kind == "B":
        return Begin(r.take("!Q"), r.take("!q"), r.take("!I"))
    if kind == "C":
        r.take("!B")  # flags: none defined
        return Commit(r.take("!Q"), r.take("!Q"), r.take("!q"))
    if kind == "R":
        relid, namespace, name, identity = r.take("!I"), r.string(), r.string(), r.byte()
        columns = []
        for _ in range(r.take("!H")):
            flags = r.take("!B")
            columns.append(Column(r.string(), r.take("!I"), r.take("!i"), bool(flags & 1)))
        return Relation(relid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == "I":
        relid = r.take("!I")
        if r.byte() != "N":
            raise DecodeError("an insert without its new tuple")
        return Insert(relid, r.tuple())
    if kind == "U":
        relid = r.take("!I")
        old = None
        marker = r.byte()
        if marker in ("K", "O"):
            old = r.tuple()
            marker = r.byte()
        if marker != "N":
            raise DecodeError("an update without its new tuple")
        return Update(relid, old, r.tuple())
    if kind == "D":
        relid = r.take("!I")
        if r.byte() not in ("K", "O"):
            raise DecodeError("a delete without its old key")
        return Delete(relid, r.tuple())
    if kind == "T":
        count, options = r.take("!I"), r.take("!B")
        return Truncate(tuple(r.take("!I") for _ in range(count)), bool(options & 1), bool(options & 2))
    if kind in ("O", "Y", "M"):
        return Other(kind)
    raise DecodeError(f"unknown message type {kind!r}")


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
