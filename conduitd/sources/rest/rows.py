"""A page's records to chunks' rows: JSON objects through the project's JSON-lines decoder (the
same types and reject reasons as the file and Kafka sources); anything else is a reject.

Each record read comes with the position after it; `cut` groups records into pieces of at most
`max_rows` rows each, a piece's end being the position after its last record, rejects riding in
the piece they fall in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position, Reject

_PAYLOAD_LIMIT = 65536


@dataclass(frozen=True)
class Read:
    """One record as read, and the position after it; `reason`: why it is rejected before decoding."""

    record: Any
    after: Position
    reason: str | None = None


@dataclass(frozen=True)
class Piece:
    rows: pa.Table
    rejects: tuple[Reject, ...]
    end: Position
    nbytes: int


def cut(reads: Sequence[Read], max_rows: int) -> list[list[Read]]:
    """Consecutive groups of `reads` holding at most `max_rows` records that can become rows."""
    groups: list[list[Read]] = [[]]
    rows = 0
    for read in reads:
        fit = read.reason is None and isinstance(read.record, dict)
        if fit and rows == max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(read)
        rows += fit
    return [g for g in groups if g]


def decode(reads: Sequence[Read], partition: str) -> Piece:
    """The rows and rejects of `reads` (non-empty)."""
    rejects: list[Reject] = []
    objects: list[Read] = []
    for read in reads:
        if read.reason is not None:
            rejects.append(Reject(partition, read.after, read.reason, _payload(read.record)))
        elif not isinstance(read.record, dict):
            rejects.append(Reject(partition, read.after, f"the record is not a JSON object "
                                  f"({_json_kind(read.record)})", _payload(read.record)))
        else:
            objects.append(read)
    lines = [_line(r.record) for r in objects]
    nbytes = sum(len(line) + 1 for line in lines)
    if lines:
        ends = np.cumsum([len(line) + 1 for line in lines])

        def position_at(byte_end: int) -> Position:
            index = int(np.searchsorted(ends, byte_end, side="left"))
            return objects[min(index, len(objects) - 1)].after

        rows, more, _ = decode_jsonl_lines(b"\n".join(lines) + b"\n", partition, position_at, lines=len(lines))
        rejects += more
    else:
        rows = pa.table({})
    return Piece(rows, tuple(rejects), reads[-1].after, nbytes)


def _line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it exactly
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _payload(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = json.dumps(value, ensure_ascii=False)
    return text[:_PAYLOAD_LIMIT]
