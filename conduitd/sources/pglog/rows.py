"""Changes as rows: text values (as pgoutput and `::text` write them) into an Arrow table with
the catalog's types (`tables.catalog.arrow_type`), plus the per-row delete mask. Pure.

A row whose value its type cannot hold (a numeric NaN, an infinite timestamp) becomes a reject
with the reason, like the polling source's. Rows of one table read before and after an
`ALTER TABLE` share the table: a column one of them lacks is null there (the destination's schema
evolution adds new columns)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.records import Position, Reject
from conduitd.sources.tables.catalog import arrow_type


@dataclass(frozen=True, slots=True)
class Change:
    """One row: its values by column name (text or None), whether it deletes its key, and what
    made it (`op`: snapshot, insert, update, delete; the source's `op_column`)."""

    values: dict[str, str | None]
    delete: bool = False
    op: str = "insert"
    problem: str = ""
    """Why the change cannot be written whole (it goes to the DLQ), or ''."""


@dataclass(frozen=True, slots=True)
class Rows:
    table: pa.Table
    deletes: np.ndarray | None
    rejects: tuple[Reject, ...]


def _cast(text: pa.Array, kind: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(kind):
        truth = pc.is_in(text, pa.array(["t", "true"]))
        known = pc.or_kleene(truth, pc.is_in(text, pa.array(["f", "false"])))
        if not pc.all(pc.or_kleene(known, pc.is_null(text))).as_py():
            raise pa.ArrowInvalid("a boolean is t or f")
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truth)
    if pa.types.is_binary(kind):
        return pa.array([None if v is None else bytes.fromhex(v.removeprefix("\\x")) for v in text.to_pylist()],
                        pa.binary())
    return pc.cast(text, kind)


def to_rows(changes: Sequence[Change], types: dict[str, str], partition: str, position: Position, *,
            op_column: str | None = None) -> Rows:
    """`changes` as one table; `types` maps every column to its SQL type (`format_type`), the
    latest one where an ALTER changed it; `position` is where the changes start (a reject's DLQ
    entry points there). With `op_column`, a last text column holds each change's `op`."""
    text = {name: pa.array([c.values.get(name) for c in changes], pa.string()) for name in types}
    problems = {i: c.problem for i, c in enumerate(changes) if c.problem}
    deletes = np.fromiter((c.delete for c in changes), dtype=bool, count=len(changes))
    ops = pa.array([c.op for c in changes], pa.string()) if op_column is not None else None
    return _typed(text, len(changes), types, partition, position, problems, deletes, (op_column, ops),
                  lambda i: orjson.dumps(changes[i].values).decode())


def text_rows(text: pa.Table, types: dict[str, str], partition: str, position: Position, *, op: str,
              op_column: str | None = None) -> Rows:
    """A table of text columns (the snapshot's CSV) as `to_rows` makes rows of changes, every row's
    op `op`."""
    n = text.num_rows
    columns = {name: text.column(name).combine_chunks() for name in types}
    ops = pa.array([op] * n, pa.string()) if op_column is not None else None
    return _typed(columns, n, types, partition, position, {}, np.zeros(n, dtype=bool), (op_column, ops),
                  lambda i: orjson.dumps(text.slice(i, 1).to_pylist()[0]).decode())


def _typed(texts: dict[str, pa.Array], count: int, types: dict[str, str], partition: str, position: Position,
           bad: dict[int, str], deletes: np.ndarray, op: tuple[str | None, pa.Array | None],
           payload: Callable[[int], str]) -> Rows:
    arrays: dict[str, pa.Array] = {}
    for name, text in texts.items():
        kind = arrow_type(types[name], "A" if types[name].endswith("]") else "")
        try:
            arrays[name] = _cast(text, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            values: list[object] = []
            for i, value in enumerate(text.to_pylist()):
                try:
                    values.append(_cast(pa.array([value], pa.string()), kind)[0].as_py())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                    bad.setdefault(i, f"column {name!r}: value {str(value)[:80]!r} does not fit {kind} "
                                      f"({str(exc)[:120]})")
                    values.append(None)
            arrays[name] = pa.array(values, kind)
    if op[0] is not None and op[1] is not None:
        arrays[op[0]] = op[1]
    table = pa.table(arrays) if arrays else pa.table({})
    rejects = tuple(Reject(partition, position, reason, payload(i)) for i, reason in sorted(bad.items()))
    if bad:
        keep = np.array([i not in bad for i in range(count)], dtype=bool)
        table, deletes = table.filter(pa.array(keep)), deletes[keep]
    return Rows(table, deletes if deletes.any() else None, rejects)
