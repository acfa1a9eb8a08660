"""Immutable values that flow through a pipeline: rejected records, chunks and batches.

A *position* is where a partition resumes after a record; it is JSON-serialisable and opaque to
the runtime (a file source uses ``{"offset": N}``). `None` means "from the beginning".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from conduitd.core.timings import Timings

Position = Any

def position_text(position: Position) -> str:
    """Canonical JSON text of a position: equal positions give equal text (for compare-and-set)."""
    return orjson.dumps(position, option=orjson.OPT_SORT_KEYS).decode()


def stored_as(text: str, position: Position) -> bool:
    """Whether a stored position's JSON `text` is `position`: its canonical text, or other text of
    the same JSON (written by hand, by a tool, by an older version: other key order or spacing)."""
    if text == position_text(position):
        return True
    try:
        return bool(orjson.loads(text) == position)
    except orjson.JSONDecodeError:
        return False


@dataclass(frozen=True, slots=True)
class Reject:
    """A record kept out of the destination table and written to the DLQ instead."""

    partition: str
    position: Position
    reason: str
    payload: str
    rule: str = "decode"
    column: str | None = None
    value: str | None = None
    reread: bool = False
    """Found again by a read of rows handed over before (a polling source's lag window): a DLQ
    that already holds an entry of the same pipeline, partition, rule, reason and payload does
    not take it again (see `conduitd.destinations.dlq_rereads`)."""


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One difference between a batch and its table, and what was done about it."""

    table: str
    kind: str
    """create, add, widen or removed."""
    column: str | None
    old: str | None
    """The column's definition before (SQL type), if it existed."""
    new: str | None
    ddl: str | None
    applied: bool


@dataclass(frozen=True, slots=True)
class Chunk:
    """What a source hands over: decoded rows of one partition between two positions."""

    partition: str
    start: Position
    end: Position
    rows: pa.Table
    rejects: tuple[Reject, ...] = ()
    nbytes: int = 0
    """Bytes read: the input's where the source knows them, else (0) the rows' Arrow size. What
    `batch.max_bytes` counts and the sizer's bytes per row come from."""
    epoch: int = 0
    """The source's epoch when this was read; a chunk of an older epoch is never committed."""
    timings: Timings = field(default_factory=Timings)
    """When it was polled and decoded (for the batch's trace)."""
    row_offsets: np.ndarray | None = None
    """Per row, where it is in its partition as a `{row_key: n}` position (the byte after a
    file's line, a Kafka record's offset, the row number after a Parquet row), to point a DLQ
    entry at the record; None: unknown."""
    row_key: str = "offset"
    """The key of the per-row positions: "offset", or "row" for Parquet (its positions count rows)."""
    deletes: np.ndarray | None = None
    """Per row, True where the row stands for a delete of its key (a Kafka tombstone: only its
    key fields are set); None: no row does. Kept beside the rows, never as a column, so no field
    of the data can be taken for it."""
    reread: bool = False
    """The rows are read again (a polling source's lag window): their rejects are `Reject.reread`."""

    def __post_init__(self) -> None:
        if not self.nbytes and self.rows.num_rows:
            object.__setattr__(self, "nbytes", self.rows.nbytes)


@dataclass(frozen=True, slots=True)
class Origin:
    """Rows from `first_row` on (until the next origin) came from this partition and chunk."""

    first_row: int
    partition: str
    start: Position
    row_key: str = "offset"
    """The key of these rows' own positions (`Chunk.row_key`)."""
    reread: bool = False
    """These rows are read again (`Chunk.reread`)."""


@dataclass(frozen=True)
class Batch:
    """Rows committed together with the end positions of every partition they came from."""

    rows: pa.Table
    rejects: tuple[Reject, ...]
    start: Mapping[str, Position]
    end: Mapping[str, Position]
    nbytes: int
    origins: tuple[Origin, ...] = field(default=())
    epoch: int = 0
    timings: Timings = field(default_factory=Timings)
    row_offsets: np.ndarray | None = None
    deletes: np.ndarray | None = None
    """Per row, True where it stands for a delete of its key (see `Chunk.deletes`)."""

    @property
    def records(self) -> int:
        """Every record read: rows plus rejects."""
        return int(self.rows.num_rows) + len(self.rejects)

    def delete_mask(self) -> np.ndarray:
        """`deletes` as a boolean array of one entry per row."""
        if self.deletes is None:
            return np.zeros(self.rows.num_rows, dtype=bool)
        return np.asarray(self.deletes, dtype=bool)

    def position_of(self, row: int) -> Position:
        """The most precise position known for a row: its own, else its chunk's start."""
        if self.row_offsets is not None:
            value = self.row_offsets[row]  # a number, or text where it has more digits than JSON keeps (Kinesis)
            return {self.origin_of(row).row_key: value if isinstance(value, str) else int(value)}
        return self.origin_of(row).start

    def origin_of(self, row: int) -> Origin:
        """The partition and chunk start a row came from (for DLQ entries of refused rows)."""
        found = self.origins[0]
        for origin in self.origins:
            if origin.first_row > row:
                break
            found = origin
        return found
