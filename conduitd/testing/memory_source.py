"""The in-memory source: the `Source` contract over partitions of records held in memory, and a
failure on cue.

    feed = MemoryFeed({"p0": [{"id": 1}, b"not json", Tombstone({"id": 1})]})
    source = MemorySource(feed, once=True, max_rows=100)

A record is a mapping (a row), a `Tombstone` (a delete of its key), or the raw bytes or text of
one JSON value, decoded by conduitd's own JSON decoder (what is not a JSON object becomes a
reject, never an exception). A partition's position is ``{"offset": N}``, the number of its
records read (Kafka's next offset); a row's own position is its record's offset. Chunks hold
at most `max_rows` records, and each one starts where the previous one of its partition ended,
the first one at the committed position (None when nothing is committed).

`once`: read what the feed held at start, then end. Otherwise wait for records appended to the
feed until `stop` is set. `fail_at=n`: raise `error` instead of handing over the n-th chunk
(once). `resync` starts a new epoch: what was read is dropped and every partition resumes from
its committed position.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Chunk, Position
from conduitd.errors import TransientError
from conduitd.sources.base import Checkpoints
from conduitd.testing.faults import ErrorSpec, make_error


@dataclass(frozen=True)
class Tombstone:
    """A record that deletes the row with this key (as a Kafka tombstone does)."""

    key: Mapping[str, Any]


Record = Mapping[str, Any] | Tombstone | bytes | str


def _line(record: Record) -> bytes:
    if isinstance(record, Tombstone):
        return orjson.dumps(dict(record.key))
    if isinstance(record, Mapping):
        return orjson.dumps(dict(record), option=orjson.OPT_NON_STR_KEYS)
    raw = record.encode() if isinstance(record, str) else record
    if b"\n" in raw:
        raise ValueError("a raw record is one line of JSON: it cannot hold a line break")
    return raw


class MemoryFeed:
    """Partitions of records (see the module docstring); sources built on one feed read the
    same records, as consumers of one topic do."""

    def __init__(self, partitions: Mapping[str, Sequence[Record]] | None = None) -> None:
        self.partitions: dict[str, list[Record]] = {}
        self._watchers: list[asyncio.Event] = []
        for partition, records in (partitions or {}).items():
            self.append(partition, *records)

    def append(self, partition: str, *records: Record) -> None:
        for record in records:
            _line(record)  # refuse what cannot be a record now, not when read
        self.partitions.setdefault(partition, []).extend(records)
        watchers, self._watchers = self._watchers, []
        for event in watchers:
            event.set()

    def watch(self) -> asyncio.Event:
        """An event set when records are next appended."""
        event = asyncio.Event()
        self._watchers.append(event)
        return event


def decode(partition: str, first: int, records: Sequence[Record], start: Position, epoch: int) -> Chunk:
    """Records `first`.. of a partition as one chunk starting at `start`."""
    lines = [_line(r) for r in records]
    ends = np.cumsum([len(line) + 1 for line in lines])
    record_at = {int(end): first + n for n, end in enumerate(ends)}
    block = b"".join(line + b"\n" for line in lines)
    rows, rejects, kept = decode_jsonl_lines(block, partition, lambda end: {"offset": record_at[end]}, len(lines))
    taken = np.arange(len(lines)) if kept is None else np.asarray(kept)
    tombstones = np.array([isinstance(records[int(i)], Tombstone) for i in taken], dtype=bool)
    return Chunk(partition, start, {"offset": first + len(records)}, rows, tuple(rejects), len(block), epoch=epoch,
                 row_offsets=(first + taken).astype(np.int64), deletes=tombstones if tombstones.any() else None)


class MemorySource:
    """See the module docstring."""

    def __init__(self, feed: MemoryFeed | Mapping[str, Sequence[Record]], *, once: bool = True, max_rows: int = 1000,
                 fail_at: int | None = None, error: ErrorSpec = TransientError) -> None:
        self.feed = feed if isinstance(feed, MemoryFeed) else MemoryFeed(feed)
        self.once = once
        self.max_rows = max_rows
        self.fail_at = fail_at
        self.error = error
        self.acknowledged: dict[str, Position] = {}
        """The positions `acknowledge` was last given, per partition."""
        self.handed = 0
        """Chunks handed over so far."""
        self.closed = False
        self._epoch = 0
        self._positions: dict[str, Position] = {}
        self._problem: str | None = None

    @property
    def epoch(self) -> int:
        return self._epoch

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        ends = {p: len(r) for p, r in self.feed.partitions.items()} if self.once else None
        epoch = -1
        while not stop.is_set():
            if epoch != self._epoch:  # first, or after a resync: from the committed positions
                epoch = self._epoch
                self._positions = dict(await checkpoints.committed())
            produced = False
            for partition in sorted(ends if ends is not None else self.feed.partitions):
                if stop.is_set() or epoch != self._epoch:
                    break  # a chunk edge: where stop and resync are seen
                records = self.feed.partitions.get(partition, [])
                limit = ends[partition] if ends is not None else len(records)
                position = self._positions.get(partition)
                first = 0 if position is None else int(position["offset"])
                if first >= limit:
                    continue
                chunk = decode(partition, first, records[first:min(first + self.max_rows, limit)], position, epoch)
                self._positions[partition] = chunk.end
                self.handed += 1
                if self.fail_at is not None and self.handed == self.fail_at:
                    self.fail_at = None
                    raise make_error(self.error, f"chunk {self.handed}")
                produced = True
                yield chunk
            if produced or epoch != self._epoch:
                continue
            if ends is not None:
                return
            waiting = asyncio.ensure_future(self.feed.watch().wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        self.acknowledged.update(positions)

    async def close(self) -> None:
        self.closed = True

    async def resync(self) -> bool:
        self._epoch += 1
        return True

    def lag(self) -> dict[str, dict[str, float]]:
        read = {p: 0 if pos is None else int(pos["offset"]) for p, pos in self._positions.items()}
        return {p: {"records": max(0, len(r) - read.get(p, 0))} for p, r in self.feed.partitions.items()}

    def problem(self) -> str | None:
        return self._problem
