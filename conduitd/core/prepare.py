"""Preparing a batch for its commit, pure and off the event loop:

    ambiguous fields -> deletes -> quality rules -> schema evolution plan -> cast to the table's columns
    -> last row per key wins -> encode for the destination

It needs the table's columns as they were last seen, not the connection, so the pipeline
prepares the next batch while the current one is being written; the commit checks that the
table has not changed meanwhile and prepares again if it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core import quality
from conduitd.core.dialect import Dialect
from conduitd.core.evolution import Evolution, ambiguous_fields, held_rows, plan, widen_for
from conduitd.core.fastcasts import precast
from conduitd.core.records import Batch, Reject
from conduitd.core.schema import Column, conform
from conduitd.errors import ConduitError, QualityFailure, SchemaIncompatible

if TYPE_CHECKING:
    from conduitd.config import PipelineConfig


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


def prepare(dialect: Dialect, pipeline: PipelineConfig, batch: Batch, live: dict[str, Column] | None,
            *, removed_warned: set[str]) -> Prepared:
    """See the module docstring; a rule that says `fail` or a schema that must stop becomes
    `Prepared.failure` rather than an exception, so the batches before it still commit."""
    prepared = Prepared(batch, live, rejects=list(batch.rejects))
    if batch.rows.num_rows == 0:
        return prepared
    try:
        with batch.timings.stage("quality"):
            _prepare_rows(prepared, dialect, pipeline, removed_warned)
    except (QualityFailure, SchemaIncompatible) as stop:
        prepared.failure = stop
    return prepared


def _prepare_rows(prepared: Prepared, dialect: Dialect, pipeline: PipelineConfig, removed_warned: set[str]) -> None:
    batch = prepared.batch
    key = pipeline.unique_key
    rows, ambiguous = ambiguous_fields(batch.rows)
    deletes = batch.delete_mask()
    source_rows = np.arange(rows.num_rows)
    if ambiguous:
        # Every record of the batch has the repeated field: none can be written as it is.
        name, reason = next(iter(ambiguous.items()))
        for row in np.flatnonzero(~deletes):
            prepared.rejects.append(_reject(batch, int(row), reason, "schema", name))
        rows, source_rows, deletes = rows.filter(pa.array(deletes)), source_rows[deletes], deletes[deletes]
        if rows.num_rows == 0:
            return
    deletes = deletes | _soft_deletes(rows, pipeline)
    keep = _apply_quality(prepared, pipeline, rows, source_rows, deletes)
    evolution = plan(dialect, pipeline, rows, prepared.live, warned=removed_warned)
    prepared.evolution = evolution
    held = held_rows(rows, evolution.held) & ~deletes
    for row in np.flatnonzero(held & keep):
        column = next(c for c in evolution.held if c in rows.column_names and rows.column(c)[int(row)].is_valid)
        value = str(rows.column(column)[int(row)].as_py())[:1000]
        prepared.rejects.append(_reject(batch, int(source_rows[row]), evolution.held[column], "schema", column,
                                        value))
    keep &= ~held
    if not keep.all():
        rows, source_rows, deletes = rows.filter(pa.array(keep)), source_rows[keep], deletes[keep]
    writable = {n: c for n, c in evolution.columns.items() if n not in evolution.dropped}
    rows = precast(rows, writable)  # the same values as conform's casts, without text on the way
    candidate, failures, kept = conform(rows, writable)
    if failures and widen_for(dialect, pipeline, evolution, rows, {f.column for f in failures}):
        writable = {n: c for n, c in evolution.columns.items() if n not in evolution.dropped}
        candidate, failures, kept = conform(rows, writable)
    for failure in failures:
        prepared.rejects.append(_reject(batch, int(source_rows[failure.row]), failure.reason, "cast",
                                        failure.column, failure.value))
    rows, source_rows, deletes = candidate, source_rows[kept], deletes[kept]
    if rows.num_columns == 0 and len(source_rows):
        # No field of these records is one the table can take: a row without columns cannot be
        # written, and must not vanish.
        for row in source_rows[~deletes]:
            prepared.rejects.append(_reject(batch, int(row), f"no field of the record can be stored in table "
                                            f"{pipeline.table_name!r}", "schema"))
        rows, source_rows, deletes = pa.table({}), source_rows[:0], deletes[:0]
    if key and rows.num_rows:
        rows, order = _last_per_key(rows, key)
        source_rows, deletes = source_rows[order], deletes[order]
        if deletes.any():
            prepared.deletes = rows.filter(pa.array(deletes)).select(list(key))
            rows, source_rows = rows.filter(pa.array(~deletes)), source_rows[~deletes]
    prepared.rows, prepared.source_rows = rows, source_rows
    prepared.columns = [writable[name] for name in rows.column_names]
    prepared.payload = dialect.encode(rows, prepared.columns) if rows.num_rows else None


def _apply_quality(prepared: Prepared, pipeline: PipelineConfig, rows: pa.Table, source_rows: np.ndarray,
                   deletes: np.ndarray) -> np.ndarray:
    """Rows to keep after the rules (deletes are not judged: they carry only a key)."""
    keep = np.ones(rows.num_rows, dtype=bool)
    if not pipeline.quality_checks or rows.num_rows == 0:
        return keep
    judged = np.flatnonzero(~deletes)
    subject = rows.take(pa.array(judged)) if len(judged) < rows.num_rows else rows
    verdict = quality.evaluate(subject, pipeline.quality_checks)
    prepared.quality_counts = verdict.counts
    if verdict.failure is not None:
        v = verdict.failure
        raise QualityFailure(f"quality rule {v.rule!r} (action fail) rejected column {v.column!r}, value "
                             f"{v.value!r} in a batch of {pipeline.name!r}; nothing of the batch was written")
    for v in verdict.rejected:
        row = int(judged[v.row])
        keep[row] = False
        prepared.rejects.append(_reject(prepared.batch, int(source_rows[row]), f"quality rule {v.rule!r} failed",
                                        v.rule, v.column, v.value))
    prepared.warned = [quality.Violation(int(source_rows[judged[v.row]]), v.rule, v.column, v.action, v.value)
                       for v in verdict.warned]
    return keep


def _soft_deletes(rows: pa.Table, pipeline: PipelineConfig) -> np.ndarray:
    """Rows whose soft-delete flag is true. Only upserts delete: in append mode the flag is plain
    data. (Tombstones come as `Batch.deletes`, beside the rows: no field of the data is a marker.)"""
    deletes = np.zeros(rows.num_rows, dtype=bool)
    flag = pipeline.deletes.soft_delete_column
    if pipeline.mode == "upsert" and flag and flag in rows.column_names:
        column = rows.column(flag)
        if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type):
            truthy = pc.equal(column.cast(pa.bool_()), True)
        else:
            truthy = pc.is_in(pc.utf8_lower(column.cast(pa.string())), pa.array(["true", "1", "yes"]))
        deletes |= np.asarray(truthy.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return deletes


def _last_per_key(rows: pa.Table, key: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
    """Within one batch the last row for each key wins (it is the newest); returns the rows and
    the index of each kept row in the input."""
    everything = np.arange(rows.num_rows)
    if rows.num_rows < 2:
        return rows, everything
    # The row numbers need a column beside the key's: named so that it is none of the key's names.
    index = "row" + "_" * (1 + max((len(k) for k in key), default=0))
    indexed = rows.select(list(key)).append_column(index, pa.array(everything))
    last = indexed.group_by(list(key), use_threads=False).aggregate([(index, "max")])
    keep = np.sort(last.column(f"{index}_max").to_numpy())
    if len(keep) == rows.num_rows:
        return rows, everything
    return rows.take(pa.array(keep)), keep


def _reject(batch: Batch, row: int, reason: str, rule: str, column: str | None = None,
            value: str | None = None) -> Reject:
    """A DLQ entry for row `row` of the batch, with the original record as its payload."""
    origin = batch.origin_of(row)
    return Reject(origin.partition, batch.position_of(row), reason, record_json(batch.rows.slice(row, 1)), rule,
                  column, value, origin.reread)


def record_json(row: pa.Table) -> str:
    """A one-row table as the JSON object it came from; every field is kept, a repeated name
    included (the text then repeats the key, as the record did)."""
    names = row.column_names
    if len(set(names)) == len(names):
        return orjson.dumps(row.to_pylist()[0], default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    values = [column[0].as_py() for column in row.columns]
    return "{" + ",".join(orjson.dumps(n).decode() + ":" + orjson.dumps(v, default=str,
                                                                         option=orjson.OPT_NON_STR_KEYS).decode()
                          for n, v in zip(names, values, strict=True)) + "}"


def refused_rejects(prepared: Prepared, refused: Sequence[tuple[int, str]]) -> list[Reject]:
    """DLQ entries for rows the destination refused (index into `prepared.rows`)."""
    return [_reject(prepared.batch, int(prepared.source_rows[i]), reason, "refused") for i, reason in refused]
