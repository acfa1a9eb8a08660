"""Preparing a batch for its commit, pure and off the event loop:

    split deletes -> quality rules -> schema evolution plan -> cast to the table's columns
    -> last row per key wins -> encode for the destination

It needs the table's columns as they were last seen, not the connection, so the pipeline
prepares the next batch while the current one is being written; the commit checks that the
table has not changed meanwhile and prepares again if it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from conduitd import quality
from conduitd.config import ResourceConfig
from conduitd.destinations.base import Dialect
from conduitd.errors import ConduitError, QualityFailure, SchemaIncompatible
from conduitd.evolution import Evolution, held_rows, plan, widen_for
from conduitd.records import DELETED, Batch, Reject
from conduitd.schema import Column, conform


@dataclass
class Prepared:
    """A batch ready to commit against the table as `live` describes it."""

    batch: Batch
    live: dict[str, Column] | None
    known: bool = True
    """False: prepared before the table's columns were known; the commit prepares it again."""
    evolution: Evolution | None = None
    rows: pa.Table = field(default_factory=lambda: pa.table({}))
    """Rows to write: cast, one per key, without deletes and rejects."""
    columns: list[Column] = field(default_factory=list)
    source_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """For each row to write, its row in `batch.rows` (to dead-letter the original if refused)."""
    deletes: pa.Table = field(default_factory=lambda: pa.table({}))
    """Key columns of the rows to delete."""
    rejects: list[Reject] = field(default_factory=list)
    payload: object | None = None
    failure: ConduitError | None = None
    """Raised by the commit, once the batches before this one are committed."""
    quality_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    warned: list[quality.Violation] = field(default_factory=list)
    replaying: tuple[int, ...] = ()
    """DLQ rows these records came from (dlq replay): removed in the same transaction."""


def prepare(dialect: Dialect, resource: ResourceConfig, batch: Batch, live: dict[str, Column] | None,
            *, removed_warned: set[str]) -> Prepared:
    """See the module docstring; a rule that says `fail` or a schema that must stop becomes
    `Prepared.failure` rather than an exception, so the batches before it still commit."""
    prepared = Prepared(batch, live, rejects=list(batch.rejects))
    if batch.rows.num_rows == 0:
        return prepared
    try:
        with batch.timings.stage("quality"):
            _prepare_rows(prepared, dialect, resource, removed_warned)
    except (QualityFailure, SchemaIncompatible) as stop:
        prepared.failure = stop
    return prepared


def _prepare_rows(prepared: Prepared, dialect: Dialect, resource: ResourceConfig, removed_warned: set[str]) -> None:
    batch = prepared.batch
    key = resource.unique_key
    rows, deletes = _split_deletes(batch.rows, resource)
    source_rows = np.arange(rows.num_rows)
    keep = _apply_quality(prepared, resource, rows, deletes)
    evolution = plan(dialect, resource, rows, prepared.live, warned=removed_warned)
    prepared.evolution = evolution
    held = held_rows(rows, evolution.held) & ~deletes
    for row in np.flatnonzero(held & keep):
        column = next(c for c in evolution.held if c in rows.column_names and rows.column(c)[int(row)].is_valid)
        value = str(rows.column(column)[int(row)].as_py())[:1000]
        prepared.rejects.append(_reject(batch, int(row), evolution.held[column], "schema", column, value))
    keep &= ~held
    if not keep.all():
        rows, source_rows, deletes = rows.filter(pa.array(keep)), source_rows[keep], deletes[keep]
    writable = {n: c for n, c in evolution.columns.items() if n not in evolution.dropped}
    candidate, failures, kept = conform(rows, writable)
    if failures and widen_for(dialect, resource, evolution, rows, {f.column for f in failures}):
        writable = {n: c for n, c in evolution.columns.items() if n not in evolution.dropped}
        candidate, failures, kept = conform(rows, writable)
    rows = candidate
    for failure in failures:
        prepared.rejects.append(_reject(batch, int(source_rows[failure.row]), failure.reason, "cast",
                                        failure.column, failure.value))
    source_rows, deletes = source_rows[kept], deletes[kept]
    if key:
        rows, order = _last_per_key(rows, key)
        source_rows, deletes = source_rows[order], deletes[order]
        if deletes.any():
            prepared.deletes = rows.filter(pa.array(deletes)).select(list(key))
            rows, source_rows = rows.filter(pa.array(~deletes)), source_rows[~deletes]
    prepared.rows, prepared.source_rows = rows, source_rows
    prepared.columns = [writable[name] for name in rows.column_names]
    prepared.payload = dialect.encode(rows, prepared.columns) if rows.num_rows else None


def _apply_quality(prepared: Prepared, resource: ResourceConfig, rows: pa.Table, deletes: np.ndarray) -> np.ndarray:
    """Rows to keep after the rules (deletes are not judged: they carry only a key)."""
    keep = np.ones(rows.num_rows, dtype=bool)
    if not resource.quality_checks:
        return keep
    judged = np.flatnonzero(~deletes)
    subject = rows.take(pa.array(judged)) if len(judged) < rows.num_rows else rows
    verdict = quality.evaluate(subject, resource.quality_checks)
    prepared.quality_counts = verdict.counts
    if verdict.failure is not None:
        v = verdict.failure
        raise QualityFailure(f"quality rule {v.rule!r} (action fail) rejected column {v.column!r}, value "
                             f"{v.value!r} in a batch of {resource.name!r}; nothing of the batch was written")
    for v in verdict.rejected:
        row = int(judged[v.row])
        keep[row] = False
        prepared.rejects.append(_reject(prepared.batch, row, f"quality rule {v.rule!r} failed", v.rule, v.column,
                                        v.value))
    prepared.warned = [quality.Violation(int(judged[v.row]), v.rule, v.column, v.action, v.value)
                       for v in verdict.warned]
    return keep


def _split_deletes(rows: pa.Table, resource: ResourceConfig) -> tuple[pa.Table, np.ndarray]:
    """Which rows stand for deletes (tombstones, or a true soft-delete flag); the marker column of
    tombstones is dropped. Only upserts delete: in append mode a soft-delete flag is plain data."""
    deletes = np.zeros(rows.num_rows, dtype=bool)
    if DELETED in rows.column_names:
        deletes |= np.asarray(rows.column(DELETED).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        rows = rows.drop_columns([DELETED])
    flag = resource.deletes.soft_delete_column
    if resource.mode == "upsert" and flag and flag in rows.column_names:
        column = rows.column(flag)
        if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type):
            truthy = pc.equal(column.cast(pa.bool_()), True)
        else:
            truthy = pc.is_in(pc.utf8_lower(column.cast(pa.string())), pa.array(["true", "1", "yes"]))
        deletes |= np.asarray(truthy.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return rows, deletes


def _last_per_key(rows: pa.Table, key: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
    """Within one batch the last row for each key wins (it is the newest); returns the rows and
    the index of each kept row in the input."""
    everything = np.arange(rows.num_rows)
    if rows.num_rows < 2:
        return rows, everything
    indexed = rows.select(list(key)).append_column("__conduitd_row", pa.array(everything))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("__conduitd_row", "max")])
    keep = np.sort(last.column("__conduitd_row_max").to_numpy())
    if len(keep) == rows.num_rows:
        return rows, everything
    return rows.take(pa.array(keep)), keep


def _reject(batch: Batch, row: int, reason: str, rule: str, column: str | None = None,
            value: str | None = None) -> Reject:
    """A DLQ entry for row `row` of the batch, with the original record as its payload."""
    origin = batch.origin_of(row)
    record = {k: v for k, v in batch.rows.slice(row, 1).to_pylist()[0].items() if k != DELETED}
    payload = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return Reject(origin.partition, batch.position_of(row), reason, payload, rule, column, value)


def refused_rejects(prepared: Prepared, refused: Sequence[tuple[int, str]]) -> list[Reject]:
    """DLQ entries for rows the destination refused (index into `prepared.rows`)."""
    return [_reject(prepared.batch, int(prepared.source_rows[i]), reason, "refused") for i, reason in refused]
