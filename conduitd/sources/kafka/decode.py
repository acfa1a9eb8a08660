"""Kafka records to chunks: one chunk per partition per poll, decoded in bulk.

Values are joined into one block of JSON lines and decoded by the columnar fast path; only what
must be looked at one by one is (sizes, tombstones, values with line breaks). Poison records
(not JSON, not an object, invalid UTF-8, over `max_record_bytes`, empty) become rejects that
carry the partition and the record's offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
from confluent_kafka import Message

from conduitd.config import KafkaSourceConfig
from conduitd.core.bytescan import lf_offsets
from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position, Reject
from conduitd.sources.kafka.consumer import offset_of


@dataclass
class Decoded:
    rows: pa.Table
    rejects: list[Reject]
    first_offset: int
    next_offset: int
    nbytes: int
    row_offsets: np.ndarray
    deletes: np.ndarray | None = None
    """Per row, True for a tombstone's row (a delete of its key): beside the rows, never a column."""


def decode_partition(config: KafkaSourceConfig, partition: str, messages: Sequence[Message], offsets: np.ndarray,
                     key_columns: Sequence[str], tombstones: bool) -> Decoded:
    """Decode the records of one partition (in offset order); `offsets` are theirs."""
    values = list(map(Message.value, messages))
    if config.format == "json" and None not in values:
        plain = _decode_plain(config, partition, messages, offsets, values)  # type: ignore[arg-type]
        if plain is not None:
            return plain
    rejects: list[Reject] = []
    lines: list[bytes] = []
    kept_messages: list[Message] = []
    nbytes = 0
    for message in messages:
        value = message.value()
        offset = offset_of(message)
        nbytes += len(value) if value is not None else 0
        if value is None:
            line, reason = _tombstone(message.key(), key_columns, tombstones and config.format == "json")
        elif len(value) > config.max_record_bytes:
            line, reason = None, f"record of {len(value)} bytes exceeds max_record_bytes ({config.max_record_bytes})"
        elif config.format == "raw":
            line, reason = b"", None
        elif not value.strip():
            line, reason = None, "empty record"
        else:
            # A JSON text can hold line breaks only as whitespace between tokens: joining values
            # into lines stays exact once they are spaces.
            line, reason = (value.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in value or b"\r" in value
                            else value), None
        if reason is not None:
            rejects.append(Reject(partition, {"offset": offset}, reason, _payload(value)))
            continue
        assert line is not None
        lines.append(line)
        kept_messages.append(message)
    if config.format == "raw":
        rows = pa.table({"value": pa.array([m.value() for m in kept_messages], pa.binary())})
    else:
        kept_offsets = [offset_of(m) for m in kept_messages]
        ends = np.cumsum([len(line) + 1 for line in lines]) if lines else np.empty(0, dtype=np.int64)

        def position_at(byte_end: int) -> Position:
            index = int(np.searchsorted(ends, byte_end, side="left"))
            return {"offset": kept_offsets[min(index, len(kept_offsets) - 1)]}

        rows, decode_rejects, kept = decode_jsonl_lines(b"\n".join(lines) + b"\n", partition, position_at)
        rejects += decode_rejects
        if kept is not None:
            kept_messages = [kept_messages[int(i)] for i in kept]
    rows = _with_metadata(rows, kept_messages, config.metadata_columns)
    row_offsets = np.array([offset_of(m) for m in kept_messages], dtype=np.int64)
    deletes = np.fromiter((m.value() is None for m in kept_messages), dtype=bool, count=len(kept_messages))
    return Decoded(rows, rejects, offset_of(messages[0]), offset_of(messages[-1]) + 1, nbytes, row_offsets,
                   deletes if deletes.any() else None)


def _decode_plain(config: KafkaSourceConfig, partition: str, messages: Sequence[Message], offsets: np.ndarray,
                  values: list[bytes]) -> Decoded | None:
    """The columnar path for the usual poll: nothing oversized, empty or spread over lines
    (checked by C-level passes over the lengths and the joined block, not a Python branch per
    record); None when a record needs looking at (the general path then names it)."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if not len(lengths) or lengths.min() == 0 or lengths.max() > config.max_record_bytes:
        return None
    joined = b"\n".join(values)
    ends = np.cumsum(lengths + 1)  # of each line, its LF counted
    separators = ends[:-1] - 1  # where the join put its LFs
    if b"\r" in joined or len(lf_offsets(joined)) != len(separators):
        return None

    def position_at(byte_end: int) -> Position:
        return {"offset": int(offsets[min(int(np.searchsorted(ends, byte_end)), len(offsets) - 1)])}

    rows, rejects, kept = decode_jsonl_lines(joined, partition, position_at, lines=len(values), newlines=separators)
    if kept is not None or rejects:
        return None
    rows = _with_metadata(rows, messages, config.metadata_columns)
    return Decoded(rows, [], int(offsets[0]), int(offsets[-1]) + 1, int(lengths.sum()), offsets)


def _tombstone(key: bytes | None, key_columns: Sequence[str], tombstones: bool) -> tuple[bytes | None, str | None]:
    if not tombstones or not key_columns:
        return None, "tombstone (null value): deletes need format json, mode upsert and deletes.tombstone"
    if key is None:
        return None, "null value without a key"
    try:
        parsed = orjson.loads(key)
    except orjson.JSONDecodeError:
        parsed = key.decode("utf-8", errors="replace")
    if isinstance(parsed, dict):
        fields = {k: parsed.get(k) for k in key_columns}
    elif len(key_columns) == 1:
        fields = {key_columns[0]: parsed}
    else:
        return None, f"tombstone key {key!r} is not a JSON object with {', '.join(key_columns)}"
    if any(v is None for v in fields.values()):
        return None, f"tombstone key {key!r} lacks {', '.join(key_columns)}"
    return orjson.dumps(fields), None


_METADATA_TYPES = {"key": pa.binary(), "topic": pa.string(), "partition": pa.int32(), "offset": pa.int64(),
                   "timestamp": pa.timestamp("ms", tz="UTC"), "headers": pa.string()}


def _with_metadata(rows: pa.Table, messages: Sequence[Message], columns: Sequence[str]) -> pa.Table:
    if rows.num_rows != len(messages):
        raise AssertionError("rows and records are out of step")
    for column in columns:
        values: list[object]
        if column in ("key", "topic", "partition", "offset"):
            values = list(map(getattr(Message, column), messages))
        elif column == "timestamp":
            values = [m.timestamp()[1] if m.timestamp()[0] != 0 else None for m in messages]
        else:
            values = [_headers_json(m.headers()) for m in messages]
        rows = rows.append_column(f"kafka_{column}", pa.array(values, _METADATA_TYPES[column]))
    return rows


def _headers_json(headers: object) -> str | None:
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    return orjson.dumps([[k, v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else v]
                         for k, v in pairs]).decode()  # type: ignore[attr-defined]


def _payload(value: bytes | None) -> str:
    return "" if value is None else value[:65536].decode("utf-8", errors="backslashreplace")
