"""Kinesis records to a chunk's rows, decoded in bulk like Kafka's.

KPL aggregates are opened first (their user records share the Kinesis record's sequence number).
JSON values are joined into one block of lines for the columnar decoder; only what must be looked
at one by one is (sizes, empty values, line breaks). Poison records (not JSON, not an object, over
`max_record_bytes`, empty, a broken aggregate) become rejects whose position is
`{"sequence_number": "..."}` in the partition `stream:shard_id`, so the DLQ names both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position, Reject
from conduitd.sources.kinesis.aggregation import AggregateError, deaggregate
from conduitd.sources.kinesis.settings import KinesisSourceConfig

ROW_KEY = "sequence_number"
_METADATA_TYPES = {"partition_key": pa.string(), "sequence_number": pa.string(), "shard_id": pa.string(),
                   "arrival_timestamp": pa.timestamp("ms", tz="UTC"), "stream": pa.string()}


@dataclass(frozen=True, slots=True)
class Unit:
    """One user record: a Kinesis record, or one of the records of a KPL aggregate."""

    data: bytes
    partition_key: str
    sequence: str
    arrival: datetime | None


@dataclass
class Decoded:
    rows: pa.Table
    rejects: list[Reject]
    nbytes: int
    row_offsets: np.ndarray
    """Per row, its record's sequence number (text: up to 128 bits)."""


def units_of(records: Sequence[dict[str, Any]], partition: str) -> tuple[list[Unit], list[Reject]]:
    """The user records of GetRecords' `Records`, aggregates opened; a broken aggregate is a reject."""
    units: list[Unit] = []
    rejects: list[Reject] = []
    for record in records:
        data = bytes(record["Data"])
        sequence = str(record["SequenceNumber"])
        arrival = record.get("ApproximateArrivalTimestamp")
        try:
            inner = deaggregate(data)
        except AggregateError as exc:
            rejects.append(Reject(partition, {ROW_KEY: sequence}, f"KPL aggregate: {exc}", _payload(data)))
            continue
        if inner is None:
            units.append(Unit(data, str(record.get("PartitionKey", "")), sequence, arrival))
        else:
            units.extend(Unit(r.data, r.partition_key, sequence, arrival) for r in inner)
    return units, rejects


def decode_records(config: KinesisSourceConfig, stream: str, shard_id: str, partition: str,
                   records: Sequence[dict[str, Any]]) -> Decoded:
    """The rows and rejects of one GetRecords answer of one shard (in sequence order)."""
    units, rejects = units_of(records, partition)
    nbytes = sum(len(u.data) for u in units)
    kept: list[Unit] = []
    lines: list[bytes] = []
    for unit in units:
        value = unit.data
        if len(value) > config.max_record_bytes:
            reason: str | None = f"record of {len(value)} bytes exceeds max_record_bytes ({config.max_record_bytes})"
        elif config.format == "json" and not value.strip():
            reason = "empty record"
        else:
            reason = None
        if reason is not None:
            rejects.append(Reject(partition, {ROW_KEY: unit.sequence}, reason, _payload(value)))
            continue
        kept.append(unit)
        if config.format == "json":
            # A JSON text holds line breaks only as whitespace between tokens: as spaces it is the same.
            lines.append(value.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in value or b"\r" in value
                         else value)
    if config.format == "raw":
        rows = pa.table({"value": pa.array([u.data for u in kept], pa.binary())})
    else:
        ends = np.cumsum([len(line) + 1 for line in lines]) if lines else np.empty(0, dtype=np.int64)

        def position_at(byte_end: int) -> Position:
            index = int(np.searchsorted(ends, byte_end, side="left"))
            return {ROW_KEY: kept[min(index, len(kept) - 1)].sequence}

        if lines:
            rows, decode_rejects, picked = decode_jsonl_lines(b"\n".join(lines) + b"\n", partition, position_at,
                                                              lines=len(lines))
            rejects += decode_rejects
            if picked is not None:
                kept = [kept[int(i)] for i in picked]
        else:
            rows = pa.table({})
    rows = _with_metadata(rows, kept, stream, shard_id, config.metadata_columns)
    offsets = np.array([u.sequence for u in kept], dtype=object)
    return Decoded(rows, rejects, nbytes, offsets)


def _with_metadata(rows: pa.Table, units: Sequence[Unit], stream: str, shard_id: str,
                   columns: Sequence[str]) -> pa.Table:
    if rows.num_rows != len(units):
        raise AssertionError("rows and records are out of step")
    for column in columns:
        values: list[object]
        if column == "partition_key":
            values = [u.partition_key for u in units]
        elif column == "sequence_number":
            values = [u.sequence for u in units]
        elif column == "arrival_timestamp":
            values = [u.arrival for u in units]
        else:
            values = [shard_id if column == "shard_id" else stream] * len(units)
        rows = rows.append_column(f"kinesis_{column}", pa.array(values, _METADATA_TYPES[column]))
    return rows


def _payload(value: bytes) -> str:
    return value[:65536].decode("utf-8", errors="backslashreplace")
