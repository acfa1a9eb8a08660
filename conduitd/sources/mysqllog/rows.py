"""Changes read from the binlog as one Arrow table of the catalog's types, plus the delete mask.
Pure.

The values are server text (`values`), parsed by the polling source's `decode`, so a row from the
log equals the same row from the snapshot. The columns are every column the table has had while
this source ran (the catalog's, refreshed after a DDL statement naming the table, never
forgetting a dropped one): a row written before an `ALTER TABLE ... ADD COLUMN` has null there,
and the destination's schema evolution adds the new column. A row naming a column the catalog
does not know (dropped again before this source saw it), or whose value the library could not
decode, is a reject with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from conduitd.core.records import Position, Reject
from conduitd.sources.mysqllog.reader import Row
from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.mysql_catalog import decode, empty, is_binary


@dataclass(frozen=True, slots=True)
class Rows:
    table: pa.Table
    deletes: np.ndarray | None
    rejects: tuple[Reject, ...]


def _payload(row: Row) -> str:
    return orjson.dumps({k: v.hex() if isinstance(v, bytes) else v for k, v in row.values.items()}).decode()


def _text(value: str | bytes | None, column: SourceColumn) -> str | bytes | None:
    if isinstance(value, str) and is_binary(column):
        return value.encode()
    return value


def to_rows(changes: Sequence[Row], columns: Sequence[SourceColumn], partition: str, position: Position, *,
            op_column: str | None = None, deletes_as_rows: bool = False) -> Rows:
    """`changes` as one table of `columns`; `position` is where the chunk starts (a reject's DLQ
    entry points there). `op_column`: a column of what made each row (`Row.op`) is added;
    `deletes_as_rows`: deletes are rows like the others (append mode with `op_column`), no mask."""
    names = {c.name for c in columns}
    rejects: list[Reject] = []
    kept: list[Row] = []
    for row in changes:
        unknown = [n for n in row.values if n not in names]
        problem = row.problem or (f"column {unknown[0]!r} is not in the table's catalog (dropped since?): its type "
                                  "is unknown" if unknown else "")
        if problem:
            rejects.append(Reject(partition, position, problem, _payload(row), rule="decode"))
        else:
            kept.append(row)
    if not kept:
        table = empty(columns)
        return Rows(with_op(table, op_column, []), None, tuple(rejects))
    grid = [tuple(_text(row.values.get(c.name), c) for c in columns) for row in kept]
    bad: list[int] = []

    def at(index: int) -> Position:
        bad.append(index)
        return position

    table, found = decode(grid, columns, partition, at)
    rejects.extend(found)
    deletes = np.fromiter((r.delete for r in kept), dtype=bool, count=len(kept))
    ops = [r.op for r in kept]
    if bad:
        keep = np.ones(len(kept), dtype=bool)
        keep[bad] = False
        deletes = deletes[keep]
        ops = [op for op, k in zip(ops, keep, strict=True) if k]
    table = with_op(table, op_column, ops)
    return Rows(table, None if deletes_as_rows or not deletes.any() else deletes, tuple(rejects))


def with_op(table: pa.Table, op_column: str | None, ops: Sequence[str]) -> pa.Table:
    """`table` with the `op_column` (text) holding `ops`, or as it is without one."""
    return table if op_column is None else table.append_column(op_column, pa.array(ops, pa.string()))
