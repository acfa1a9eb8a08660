"""De-aggregation of Kinesis records packed by the Kinesis Producer Library (KPL).

A KPL aggregate is one Kinesis record holding many user records::

    MAGIC (f3 89 9a c2) | protobuf AggregatedRecord | MD5 digest of the protobuf bytes (16 bytes)

    message AggregatedRecord {
      repeated string partition_key_table = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records = 3;
    }
    message Record {
      required uint64 partition_key_index = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3;
      repeated Tag tags = 4;           // skipped: user records carry no tags downstream
    }

Like the KCL, a record that starts with the magic but whose digest does not match (or that has no
protobuf bytes at all) is a plain record that happens to start with those bytes. Once the digest
matches, the producer meant an aggregate, so a body that does not decode is an `AggregateError`
(the source dead-letters the record with its message) rather than data passed on as is.

The protobuf decoder is written by hand (no protobuf dependency at runtime). It follows the
protobuf parsing rules: fields may come in any order, a field of unknown number or of a known
number with an unexpected wire type is skipped (groups included), and of a scalar field given
twice the last value wins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

MAGIC = b"\xf3\x89\x9a\xc2"
"""The first bytes of every KPL aggregate."""

DIGEST_SIZE = 16
"""Length of the MD5 digest that ends every KPL aggregate."""

_VARINT, _FIXED64, _LENGTH_DELIMITED, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_VARINT_BYTES = 10


class AggregateError(ValueError):
    """A record is a KPL aggregate (its digest matches) but its protobuf body is malformed."""


@dataclass(frozen=True, slots=True)
class SubRecord:
    """One user record unpacked from a KPL aggregate."""

    partition_key: str
    """The partition key the producer gave this user record."""
    data: bytes
    """The user record's payload, as the producer gave it."""
    explicit_hash_key: str | None
    """The explicit hash key the producer gave this user record, None when it gave none."""


def deaggregate(data: bytes) -> list[SubRecord] | None:
    """The user records inside a KPL aggregate, in order; None when `data` is not one (no magic,
    too short, or its digest does not match: it is then a plain record).

    Raises `AggregateError` when the digest matches but the protobuf body is malformed.
    """
    body = _verified_body(data)
    if body is None:
        return None
    return _decode_aggregate(body)


def _verified_body(data: bytes) -> bytes | None:
    """The protobuf bytes of `data` when it is a KPL aggregate whose digest matches, else None."""
    if len(data) <= len(MAGIC) + DIGEST_SIZE or not data.startswith(MAGIC):
        return None
    body = data[len(MAGIC) : -DIGEST_SIZE]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[-DIGEST_SIZE:]:
        return None
    return body


class _RawRecord(NamedTuple):
    """A `Record` message as it stands on the wire: its keys are still indexes into the tables."""

    partition_key_index: int
    explicit_hash_key_index: int | None
    data: bytes


def _decode_aggregate(body: bytes) -> list[SubRecord]:
    """The user records of an `AggregatedRecord` message, their keys looked up in its tables."""
    reader = _Reader(body, 0, len(body))
    partition_keys: list[str] = []
    explicit_hash_keys: list[str] = []
    raw_records: list[_RawRecord] = []
    while not reader.at_end():
        field, wire_type = reader.tag()
        if field == 1 and wire_type == _LENGTH_DELIMITED:
            partition_keys.append(reader.string(f"partition_key_table[{len(partition_keys)}]"))
        elif field == 2 and wire_type == _LENGTH_DELIMITED:
            explicit_hash_keys.append(reader.string(f"explicit_hash_key_table[{len(explicit_hash_keys)}]"))
        elif field == 3 and wire_type == _LENGTH_DELIMITED:
            raw_records.append(_decode_record(reader.message(), len(raw_records)))
        else:
            reader.skip(field, wire_type)
    # The tables may follow the records on the wire, so keys are resolved only once all is read.
    return [_resolve(raw, number, partition_keys, explicit_hash_keys) for number, raw in enumerate(raw_records)]


def _decode_record(reader: _Reader, number: int) -> _RawRecord:
    """The `Record` message in `reader`, the `number`-th of its aggregate (for error messages)."""
    partition_key_index: int | None = None
    explicit_hash_key_index: int | None = None
    data: bytes | None = None
    while not reader.at_end():
        field, wire_type = reader.tag()
        if field == 1 and wire_type == _VARINT:
            partition_key_index = reader.varint()
        elif field == 2 and wire_type == _VARINT:
            explicit_hash_key_index = reader.varint()
        elif field == 3 and wire_type == _LENGTH_DELIMITED:
            data = reader.payload()
        else:
            reader.skip(field, wire_type)
    if partition_key_index is None:
        raise AggregateError(f"KPL aggregate: record {number} has no partition_key_index")
    if data is None:
        raise AggregateError(f"KPL aggregate: record {number} has no data")
    return _RawRecord(partition_key_index, explicit_hash_key_index, data)


def _resolve(raw: _RawRecord, number: int, partition_keys: list[str], explicit_hash_keys: list[str]) -> SubRecord:
    """`raw` with its key indexes replaced by the keys of the aggregate's tables."""
    partition_key = _lookup(partition_keys, raw.partition_key_index, number, "partition_key")
    explicit_hash_key = None
    if raw.explicit_hash_key_index is not None:
        explicit_hash_key = _lookup(explicit_hash_keys, raw.explicit_hash_key_index, number, "explicit_hash_key")
    return SubRecord(partition_key=partition_key, data=raw.data, explicit_hash_key=explicit_hash_key)


def _lookup(table: list[str], index: int, number: int, key: str) -> str:
    """Entry `index` of the aggregate's `key` table, for its `number`-th record."""
    if index >= len(table):
        raise AggregateError(
            f"KPL aggregate: record {number} has {key}_index {index}, "
            f"but the {key} table has {len(table)} entries"
        )
    return table[index]


class _Reader:
    """A cursor over one protobuf message: the bytes of `buf` from `pos` up to `end`.

    Offsets in error messages count from the start of the aggregate's protobuf body.
    """

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def at_end(self) -> bool:
        """Whether every field of the message has been read."""
        return self.pos >= self.end

    def varint(self) -> int:
        """The base-128 varint at the cursor, as an unsigned 64-bit value."""
        start = self.pos
        result = 0
        for count in range(_MAX_VARINT_BYTES):
            if self.pos >= self.end:
                raise AggregateError(f"KPL aggregate: truncated varint at byte {start}")
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << (7 * count)
            if byte < 0x80:
                if result >> 64:
                    raise AggregateError(f"KPL aggregate: varint at byte {start} exceeds 64 bits")
                return result
        raise AggregateError(f"KPL aggregate: varint at byte {start} is longer than {_MAX_VARINT_BYTES} bytes")

    def tag(self) -> tuple[int, int]:
        """The field number and wire type of the field at the cursor."""
        start = self.pos
        key = self.varint()
        field, wire_type = key >> 3, key & 7
        if not 1 <= field <= _MAX_FIELD_NUMBER:
            raise AggregateError(f"KPL aggregate: invalid field number {field} at byte {start}")
        return field, wire_type

    def payload(self) -> bytes:
        """The payload of the length-delimited field at the cursor."""
        start, stop = self._span()
        return self.buf[start:stop]

    def string(self, what: str) -> str:
        """The payload of the length-delimited field at the cursor, as UTF-8 text (`what` names it)."""
        start, stop = self._span()
        try:
            return self.buf[start:stop].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AggregateError(f"KPL aggregate: {what} at byte {start} is not UTF-8: {exc.reason}") from None

    def message(self) -> _Reader:
        """A reader over the embedded message at the cursor (the cursor moves past it)."""
        start, stop = self._span()
        return _Reader(self.buf, start, stop)

    def skip(self, field: int, wire_type: int) -> None:
        """Move past the value of a field whose tag was just read, a whole group for a start-group."""
        open_groups: list[int] = []  # field numbers of the groups entered and not yet closed
        while True:
            if wire_type == _VARINT:
                self.varint()
            elif wire_type == _FIXED64:
                self._advance(8)
            elif wire_type == _LENGTH_DELIMITED:
                self._span()
            elif wire_type == _FIXED32:
                self._advance(4)
            elif wire_type == _START_GROUP:
                open_groups.append(field)
            elif wire_type == _END_GROUP:
                if not open_groups or open_groups.pop() != field:
                    raise AggregateError(f"KPL aggregate: unmatched end of group {field} before byte {self.pos}")
            else:
                raise AggregateError(f"KPL aggregate: invalid wire type {wire_type} before byte {self.pos}")
            if not open_groups:
                return
            if self.at_end():
                raise AggregateError(f"KPL aggregate: group {open_groups[-1]} is not closed")
            field, wire_type = self.tag()

    def _span(self) -> tuple[int, int]:
        """Start and end of the length-delimited payload at the cursor; the cursor moves past it."""
        length = self.varint()
        start = self.pos
        self._advance(length)
        return start, start + length

    def _advance(self, count: int) -> None:
        """Move the cursor `count` bytes on, all of them inside the message."""
        if count > self.end - self.pos:
            raise AggregateError(
                f"KPL aggregate: field at byte {self.pos} needs {count} bytes, only {self.end - self.pos} remain"
            )
        self.pos += count
