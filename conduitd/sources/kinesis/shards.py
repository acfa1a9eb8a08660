"""A stream's shards as a family tree: which may be read now, and from where.

A partition is `stream:shard_id`; its position `{"sequence": "<digits>", "end": true|false}` is the
last sequence number committed (compared as a number, never as text) and whether the shard was read
to its end. A child shard is read only once every parent's end is committed, so the records of one
partition key stay in order across splits and merges; a parent no longer listed (past the
retention period) counts as read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conduitd.core.records import Position
from conduitd.sources.kinesis.api import parent_ids


@dataclass(frozen=True, slots=True)
class Shard:
    stream: str
    shard_id: str
    parents: tuple[str, ...]
    first_sequence: int
    """The shard's starting sequence number: older generations have smaller ones."""
    closed: bool
    """It has an ending sequence number: it takes no more records."""

    @property
    def partition(self) -> str:
        return partition_name(self.stream, self.shard_id)


def partition_name(stream: str, shard_id: str) -> str:
    return f"{stream}:{shard_id}"


def shards_of(stream: str, listing: Iterable[Mapping[str, Any]]) -> list[Shard]:
    return [Shard(stream, str(s["ShardId"]), tuple(parent_ids(s)),
                  int(s.get("SequenceNumberRange", {}).get("StartingSequenceNumber", 0) or 0),
                  bool(s.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))) for s in listing]


def finished(position: Position) -> bool:
    return isinstance(position, dict) and bool(position.get("end"))


def sequence_of(position: Position) -> str | None:
    if isinstance(position, dict) and position.get("sequence") is not None:
        return str(position["sequence"])
    return None


def readable(shards: Iterable[Shard], done: set[str]) -> list[Shard]:
    """The shards not read to their end whose parents all are (or are gone), oldest generation first.
    `done` holds the partitions whose end is committed."""
    listed = list(shards)
    known = {s.partition for s in listed}
    ready = [s for s in listed if s.partition not in done
             and all(partition_name(s.stream, p) in done or partition_name(s.stream, p) not in known
                     for p in s.parents)]
    return sorted(ready, key=lambda s: (s.first_sequence, s.stream, s.shard_id))
