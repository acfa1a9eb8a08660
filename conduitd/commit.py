"""The commit protocol for one batch, as named steps run inside one destination transaction:

    split deletes -> evolve table -> conform rows -> resolve duplicate keys (last wins) -> delete
    -> write rows (isolating refused ones) -> write DLQ rows -> compare-and-set checkpoints

The caller opens the transaction, calls `write_batch`, and commits when it returns; any exception
rolls everything back, so rows, DLQ rows and positions are stored together or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.config import ResourceConfig
from conduitd.destinations.base import CommitResult, RowsRefused, Transaction
from conduitd.errors import CheckpointConflict, SchemaIncompatible
from conduitd.records import DELETED, Batch, Reject
from conduitd.schema import Column, conform, refine_types

log = logging.getLogger(__name__)


async def write_batch(tx: Transaction, resource: ResourceConfig, batch: Batch) -> CommitResult:
    """Run every step of the commit inside `tx`; raise CheckpointConflict if a position moved."""
    table = resource.table_name
    key = resource.unique_key
    rejects = list(batch.rejects)
    ddl: list[str] = []
    written = deleted = 0
    timings = batch.timings
    if batch.rows.num_rows:
        rows, deletes = _split_deletes(batch.rows, resource)
        with timings.stage("schema"):
            columns, ddl = await _evolve_table(tx, table, rows, key)
        with timings.stage("quality"):
            rows, failures, source_rows = conform(rows, columns)
            rejects += [_reject(batch, f.row, f.reason, "cast", f.column, f.value) for f in failures]
            if key:
                rows, source_rows = _last_per_key(rows, source_rows, key)
                rows, source_rows, doomed = _without_deleted(rows, source_rows, deletes)
        with timings.stage("write"):
            if key and doomed.num_rows:
                deleted = await tx.delete_rows(table, doomed.select(list(key)))
            written_cols = [columns[name] for name in rows.column_names]
            refused = await _write_isolating(tx, table, rows, written_cols, key)
        rejects += [_reject(batch, int(source_rows[i]), reason, "refused") for i, reason in refused]
        written = rows.num_rows - len(refused)
    with timings.stage("write"):
        if rejects:
            await tx.write_rejects(resource.dlq_table, resource.name, rejects)
    timings.begin("commit")  # ended by the destination once COMMIT has returned
    await _advance_checkpoints(tx, resource.name, batch)
    return CommitResult(written, len(rejects), tuple(ddl), deleted, dict(Counter(r.rule for r in rejects)))


def _split_deletes(rows: pa.Table, resource: ResourceConfig) -> tuple[pa.Table, np.ndarray]:
    """Which rows stand for deletes (tombstones, or a true soft-delete flag); the marker column of
    tombstones is dropped. Only upserts delete: in append mode a soft-delete flag is plain data."""
    deletes = np.zeros(rows.num_rows, dtype=bool)
    if DELETED in rows.column_names:
        deletes |= rows.column(DELETED).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        rows = rows.drop_columns([DELETED])
    flag = resource.deletes.soft_delete_column
    if resource.mode == "upsert" and flag and flag in rows.column_names:
        column = rows.column(flag)
        truthy = pc.equal(column.cast(pa.bool_()), True) if pa.types.is_boolean(column.type) or \
            pa.types.is_integer(column.type) else pc.is_in(column.cast(pa.string()), pa.array(["true", "True", "1"]))
        deletes |= truthy.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    return rows, deletes


def _without_deleted(rows: pa.Table, source_rows: np.ndarray,
                     deletes: np.ndarray) -> tuple[pa.Table, np.ndarray, pa.Table]:
    """After last-per-key resolution: rows whose last word is a delete are removed from the write
    and returned (their key columns) to be deleted from the table."""
    mask = deletes[source_rows]
    if not mask.any():
        return rows, source_rows, pa.table({})
    return rows.filter(pa.array(~mask)), source_rows[~mask], rows.filter(pa.array(mask))


async def _evolve_table(tx: Transaction, table: str, rows: pa.Table,
                        key: Sequence[str]) -> tuple[dict[str, Column], list[str]]:
    """Create the table from the batch, or add the batch's new columns (nullable)."""
    existing = await tx.table_columns(table)
    missing_key = [k for k in key if k not in rows.column_names and (existing is None or k not in existing)]
    if missing_key:
        raise SchemaIncompatible(f"table {table!r}: unique_key column(s) {missing_key} are not in the data")
    new_names = [n for n in rows.column_names if existing is None or n not in existing]
    refined = refine_types(rows.select(new_names)) if new_names else None
    new_columns = [tx.column_for(f.name, f.type) for f in refined.schema] if refined is not None else []
    if existing is None:
        return {c.name: c for c in new_columns}, [await tx.create_table(table, new_columns, key)]
    ddl = [await tx.add_column(table, column) for column in new_columns]
    for statement in ddl:
        log.info("schema change: %s", statement, extra={"table": table})
    return {**existing, **{c.name: c for c in new_columns}}, ddl


def _last_per_key(rows: pa.Table, source_rows: np.ndarray, key: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
    """Within one batch, the last row for each key wins (it is the newest)."""
    if rows.num_rows < 2:
        return rows, source_rows
    indexed = rows.select(list(key)).append_column("__conduitd_row", pa.array(np.arange(rows.num_rows)))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("__conduitd_row", "max")])
    keep = np.sort(last.column("__conduitd_row_max").to_numpy())
    if len(keep) == rows.num_rows:
        return rows, source_rows
    return rows.take(pa.array(keep)), source_rows[keep]


async def _write_isolating(tx: Transaction, table: str, rows: pa.Table, columns: Sequence[Column],
                           key: Sequence[str], offset: int = 0) -> list[tuple[int, str]]:
    """Write `rows`; if the destination refuses a value, halve the rows (each half under a
    savepoint) until the refused rows stand alone. Returns (row index, reason) per refused row."""
    if rows.num_rows == 0:
        return []
    await tx.savepoint()
    try:
        await tx.write_rows(table, rows, columns, key)
    except RowsRefused as refused:
        await tx.rollback_to_savepoint()
        if rows.num_rows == 1:
            return [(offset, refused.reason)]
        middle = rows.num_rows // 2
        first = await _write_isolating(tx, table, rows.slice(0, middle), columns, key, offset)
        rest = await _write_isolating(tx, table, rows.slice(middle), columns, key, offset + middle)
        return first + rest
    await tx.release_savepoint()
    return []


def _reject(batch: Batch, row: int, reason: str, rule: str,
            column: str | None = None, value: str | None = None) -> Reject:
    origin = batch.origin_of(row)
    record = batch.rows.slice(row, 1).to_pylist()[0]
    payload = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return Reject(origin.partition, origin.start, reason, payload, rule, column, value)


async def _advance_checkpoints(tx: Transaction, pipeline: str, batch: Batch) -> None:
    for partition, end in batch.end.items():
        start = batch.start.get(partition)
        if not await tx.compare_and_set(pipeline, partition, start, end):
            raise CheckpointConflict(
                f"pipeline {pipeline!r}, partition {partition!r}: the stored position is no longer "
                f"{start!r}; another writer advanced it, this batch is rolled back")
