"""Batches and observations the contract tests share (no pytest here): how to build a batch from
rows, the two-batch scenario that runs every step of the commit protocol, and what a destination
holds for one pipeline, seen through its contract.

The scenario, on an upsert pipeline keyed on `id` (an append pipeline where the destination
cannot upsert), partitions p0 and p1:

    batch 1   p0: rows 1 "a", 2 "b" and a malformed record; p1: rows 3 "c", 4 "d"
              -> CREATE TABLE, a DLQ row, two checkpoints
    batch 2   replays batch 1's DLQ row (removes it); p0: row 5 "e" with a new column `score`,
              row 3 updated to "c2" (append: a new row 6 "f"); p1: a delete of row 2 (append:
              none) and a malformed record
              -> ALTER TABLE ADD COLUMN, history, a delete, an upsert, a DLQ row, two checkpoints
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.records import Batch, Chunk, Position, Reject, position_text
from conduitd.destinations.base import Destination, DlqFilter
from conduitd.runtime.batching import build_batch


def chunk(partition: str, start: Position, end: Position, rows: Sequence[Mapping[str, Any]] = (),
          rejects: Sequence[Reject] = (), deletes: Sequence[bool] | None = None) -> Chunk:
    table = pa.Table.from_pylist([dict(r) for r in rows]) if rows else pa.table({})
    mask = None if deletes is None else np.asarray(deletes, dtype=bool)
    return Chunk(partition, start, end, table, tuple(rejects), 0, deletes=mask)


def batch(*chunks: Chunk) -> Batch:
    return build_batch(list(chunks))


def malformed(partition: str, offset: int, payload: str) -> Reject:
    return Reject(partition, {"offset": offset}, "not valid JSON", payload)


def scenario_pipeline(name: str, upsert: bool = True) -> PipelineConfig:
    if not upsert:
        return PipelineConfig(name=name, source="s", destination="d", table=name)
    return PipelineConfig(name=name, source="s", destination="d", table=name, mode="upsert", unique_key=("id",))


def first_batch() -> Batch:
    return batch(chunk("p0", None, {"offset": 3}, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                       [malformed("p0", 2, "not json")]),
                 chunk("p1", None, {"offset": 2}, [{"id": 3, "name": "c"}, {"id": 4, "name": "d"}]))


def second_batch(upsert: bool = True) -> Batch:
    if not upsert:
        return batch(chunk("p0", {"offset": 3}, {"offset": 5},
                           [{"id": 5, "name": "e", "score": 1.5}, {"id": 6, "name": "f", "score": None}]),
                     chunk("p1", {"offset": 2}, {"offset": 4}, [], [malformed("p1", 3, "also not json")]))
    return batch(chunk("p0", {"offset": 3}, {"offset": 5},
                       [{"id": 5, "name": "e", "score": 1.5}, {"id": 3, "name": "c2", "score": None}]),
                 chunk("p1", {"offset": 2}, {"offset": 4}, [{"id": 2}], [malformed("p1", 3, "also not json")],
                       deletes=[True]))


@dataclass(frozen=True)
class Outcome:
    """What a destination holds for one pipeline of the scenario."""

    rows: tuple[tuple[Any, ...], ...]
    """(id, name, score), by id."""
    dlq: tuple[tuple[str | None, str, str, str | None], ...]
    """(partition, position as JSON text, rule, payload), in DLQ order."""
    history: tuple[tuple[str, str | None], ...] | None
    """(change, column), or None when the destination's history cannot be read."""
    checkpoints: Mapping[str, str]
    """partition -> position as JSON text."""
    columns: tuple[str, ...] | None


EXPECTED_AFTER_FIRST = (((1, "a", None), (2, "b", None), (3, "c", None), (4, "d", None)),
                        (("p0", position_text({"offset": 2}), "decode", "not json"),),
                        (("create", None),))
EXPECTED_AFTER_SECOND = (((1, "a", None), (3, "c2", None), (4, "d", None), (5, "e", 1.5)),
                         (("p1", position_text({"offset": 3}), "decode", "also not json"),),
                         (("create", None), ("add", "score")))
EXPECTED_AFTER_SECOND_APPENDED = (((1, "a", None), (2, "b", None), (3, "c", None), (4, "d", None), (5, "e", 1.5),
                                   (6, "f", None)), *EXPECTED_AFTER_SECOND[1:])

ReadRows = Callable[[str], Awaitable[list[dict[str, Any]]]]
ReadHistory = Callable[[str], Awaitable[list[tuple[str, str | None]] | None]]


async def observe(destination: Destination, pipeline: PipelineConfig, read_rows: ReadRows,
                  read_history: ReadHistory) -> Outcome:
    columns = await destination.table_columns(pipeline.table_name)
    rows = await read_rows(pipeline.table_name) if columns is not None else []
    entries = await destination.read_dlq(pipeline, DlqFilter())
    history = await read_history(pipeline.name)
    checkpoints = await destination.load_checkpoints(pipeline.name)
    return Outcome(
        tuple(sorted((r["id"], r["name"], _number(r.get("score"))) for r in rows)),
        tuple((e.partition, position_text(e.position), e.rule, e.payload) for e in entries),
        None if history is None else tuple(history),
        {p: position_text(v) for p, v in checkpoints.items()},
        None if columns is None else tuple(sorted(columns)))


def _number(value: Any) -> Any:
    return None if value is None else float(value)


def spellings(secret: str) -> list[str]:
    """The ways a message may quote a secret: as is, %-encoded, JSON-escaped, repr-escaped."""
    return sorted({secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1], repr(secret)[1:-1]})


def leaked(secret: str, text: str) -> str | None:
    """The spelling of `secret` found in `text`, or None."""
    return next((s for s in spellings(secret) if s and re.search(re.escape(s), text)), None)
