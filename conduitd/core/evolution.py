"""Schema evolution, decided when a batch is prepared: its columns against the live table's.

Differences: a column the table lacks (added), a table column the batch lacks (removed), and a
column whose values need a wider type than the table's (int -> bigint -> numeric, int -> double,
real -> double). What happens is the pipeline's `schema_evolution` policy; the outcome is the
columns to cast the batch to, the columns to leave out, the rows that must wait in the DLQ, and
the changes to record in `conduitd_schema_history`.

A new column's type is chosen by `schema.logical_type`: a database source's uuid and JSON text
columns get the destination's uuid and JSON types. A column the table has keeps its type: uuid
text into a `text` column stays text, and is never a type change.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.dialect import Dialect
from conduitd.core.records import SchemaChange
from conduitd.core.schema import Column, cast_column, column_slots, logical_type, refine_types
from conduitd.errors import SchemaIncompatible

if TYPE_CHECKING:
    from conduitd.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class Evolution:
    """What the batch may be written as, after the policy has spoken."""

    columns: dict[str, Column]
    """The table's columns (after applied changes), to cast the batch to."""
    changes: list[SchemaChange] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    """column -> reason: rows with a value there go to the DLQ (the column is not in the table)."""
    dropped: list[str] = field(default_factory=list)
    """Columns whose values are not written (warn mode)."""


def plan(tx: Dialect, pipeline: PipelineConfig, rows: pa.Table, live: dict[str, Column] | None,
         *, warned: set[str]) -> Evolution:
    """Compare and decide per policy (pure). The changes marked applied are the DDL the commit runs;
    manual mode writes the others to a migration file. Raises SchemaIncompatible to stop.
    `rows` has unique column names (see `ambiguous_fields`)."""
    table = pipeline.table_name
    key = pipeline.unique_key
    missing_key = [k for k in key if k not in rows.column_names and (live is None or k not in live)]
    if missing_key:
        raise SchemaIncompatible(f"table {table!r}: unique_key column(s) {missing_key} are not in the data")
    limit = tx.max_identifier_bytes
    if limit and len(table.encode()) > limit:
        raise SchemaIncompatible(f"table name {table!r} is longer than the {limit} bytes the destination allows")
    held = refused_names(tx, rows.column_names, live, key)
    bad_key = [k for k in key if k in held]
    if bad_key:  # the key comes from the configuration, not from one record: stop and say so
        raise SchemaIncompatible(f"table {table!r}: unique_key column {bad_key[0]!r}: {held[bad_key[0]]}")
    if live is None:
        names = [n for n in rows.column_names if n not in held]
        held.update(over_column_limit(tx, names, 0, key))
        kept = [n for n in names if n not in held]
        if not kept:  # nothing the destination can take: no table yet (SQLite cannot create one without columns)
            return Evolution({}, held=held)
        columns = [tx.column_for(f.name, logical_type(f)) for f in refine_types(rows.select(kept)).schema]
        ddl = tx.create_table_ddl(table, columns, key)
        return Evolution({c.name: c for c in columns},
                         [SchemaChange(table, "create", None, None, None, ddl, applied=True)], held=held)
    evolution = Evolution(dict(live), held=held)
    added = [n for n in rows.column_names if n not in live and n not in held]
    if added and pipeline.schema_evolution.mode == "auto":
        held.update(over_column_limit(tx, added, column_slots(live), key))
        added = [n for n in added if n not in held]
    if added:
        refined = refine_types(rows.select(added))
        _add(tx, pipeline, evolution, [tx.column_for(f.name, logical_type(f)) for f in refined.schema])
    removed = [n for n in live if n not in rows.column_names and n not in warned]
    if removed:
        _removed(pipeline, removed, warned)
    return evolution


def refused_names(tx: Dialect, names: Sequence[str], live: Mapping[str, Column] | None,
                  key: Sequence[str] = ()) -> dict[str, str]:
    """The fields the destination cannot take as new columns, with why (one mechanism for every
    reason: `Dialect.name_problem`, and a name the destination takes for another column's, as
    SQLite does for names that differ only in case). A column the table has is fine as it is;
    in a clash the table's column wins, then the key's, then the first field of the batch."""
    live = live or {}
    refused: dict[str, str] = {}
    taken = {tx.name_key(n): n for n in live}
    for name in [*(k for k in key if k in names), *names]:
        if name in live or name in refused:
            continue
        problem = tx.name_problem(name)
        if problem is None:
            other = taken.setdefault(tx.name_key(name), name)
            if other != name:
                problem = (f"column name {name[:40]!r} and column {other[:40]!r} are one column to the destination "
                           "(it ignores the case of names)")
        if problem is not None:
            refused[name] = problem
    return refused


def over_column_limit(tx: Dialect, adding: Sequence[str], existing: int, key: Sequence[str] = ()) -> dict[str, str]:
    """The columns among `adding` that would take a table of `existing` columns past the
    destination's limit (the key's columns first, then in order, are the ones that fit)."""
    room = max(0, tx.max_columns - existing)
    if len(adding) <= room:
        return {}
    fits = set(list(dict.fromkeys([*(k for k in key if k in adding), *adding]))[:room])
    why = f"the table would have more than {tx.max_columns} columns"
    return {n: why for n in adding if n not in fits}


def ambiguous_fields(rows: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """A field name that appears more than once (a CSV header `id,name,name`, a Parquet file's
    columns) leaves every record's value there ambiguous: the rows without those columns, and
    why per name (the caller dead-letters the rows)."""
    counts = Counter(rows.column_names)
    repeated = {n: c for n, c in counts.items() if c > 1}
    if not repeated:
        return rows, {}
    unique = [i for i, n in enumerate(rows.column_names) if n not in repeated]
    reasons = {n: f"field name {n[:40]!r} appears {c} times in the record: its value is ambiguous"
               for n, c in repeated.items()}
    return rows.select(unique), reasons


def _add(tx: Dialect, pipeline: PipelineConfig, evolution: Evolution, columns: list[Column]) -> None:
    table, mode = pipeline.table_name, pipeline.schema_evolution.mode
    for column in columns:
        ddl = tx.add_column_ddl(table, column)
        if mode == "strict":
            raise SchemaIncompatible(f"table {table!r} has no column {column.name!r} (schema_evolution strict): {ddl}")
        if mode == "auto":
            evolution.columns[column.name] = column
            evolution.changes.append(SchemaChange(table, "add", column.name, None, column.sql, ddl, applied=True))
        elif mode == "manual":
            evolution.held[column.name] = (f"column {column.name!r} is not in table {table!r} yet: apply the "
                                           f"migration in {pipeline.schema_evolution.migrations_dir} ({ddl})")
            evolution.changes.append(SchemaChange(table, "add", column.name, None, column.sql, ddl, applied=False))
        else:
            log.warning("table %s has no column %r: its values are not written (schema_evolution warn; %s)",
                        table, column.name, ddl, extra={"pipeline": pipeline.name})
            evolution.dropped.append(column.name)


def _widen(tx: Dialect, pipeline: PipelineConfig, evolution: Evolution, old: Column, new: Column) -> None:
    table, policy = pipeline.table_name, pipeline.schema_evolution
    ddl = tx.widen_column_ddl(table, new)
    what = f"column {old.name!r} of {table!r} needs {new.sql} instead of {old.sql}"
    if policy.mode == "strict" or policy.on_type_change == "fail":
        raise SchemaIncompatible(f"{what} (schema_evolution {policy.mode}, on_type_change {policy.on_type_change})")
    if policy.mode == "auto" and policy.on_type_change == "widen":
        evolution.columns[old.name] = new
        evolution.changes.append(SchemaChange(table, "widen", old.name, old.sql, new.sql, ddl, applied=True))
        return
    if policy.mode == "manual":
        evolution.changes.append(SchemaChange(table, "widen", old.name, old.sql, new.sql, ddl, applied=False))
    log.warning("%s: rows that do not fit go to the DLQ (schema_evolution %s, on_type_change %s)", what,
                policy.mode, policy.on_type_change, extra={"pipeline": pipeline.name})


def _removed(pipeline: PipelineConfig, removed: Sequence[str], warned: set[str]) -> None:
    policy = pipeline.schema_evolution
    what = f"table {pipeline.table_name!r} has column(s) {', '.join(map(repr, removed))} the data lacks"
    if policy.mode == "strict" or policy.on_column_removed == "fail":
        raise SchemaIncompatible(f"{what} (schema_evolution {policy.mode}, on_column_removed "
                                 f"{policy.on_column_removed})")
    log.warning("%s: rows get its default there (NULL if it has none; logged once per column)", what,
                extra={"pipeline": pipeline.name})
    warned.update(removed)


def widen_for(tx: Dialect, pipeline: PipelineConfig, evolution: Evolution, rows: pa.Table,
              failed_columns: set[str]) -> bool:
    """Some values did not cast to their column: where a widening of that column holds them all,
    apply the policy to it. True when a column changed (the batch is then cast again)."""
    changed = False
    for name in sorted(failed_columns):
        column = evolution.columns.get(name)
        if column is None or name not in rows.column_names:
            continue
        wider = _widening(tx, column, rows.column(name))
        if wider is not None:
            before = evolution.columns[name]
            _widen(tx, pipeline, evolution, column, wider)
            changed = changed or evolution.columns[name] is not before
    return changed


def _widening(tx: Dialect, column: Column, values: pa.ChunkedArray) -> Column | None:
    """The wider column these values need (they did not fit `column`), or None if no widening
    holds them all (those rows are the cast's to reject)."""
    target, source = column.arrow, values.type
    if not (pa.types.is_integer(target) or pa.types.is_floating(target) or pa.types.is_decimal(target)):
        return None
    if not (pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_decimal(source)):
        return None
    for wider in _wider_types(target):
        candidate = tx.column_for(column.name, wider)
        if (candidate.sql != column.sql and tx.widening_holds(column, candidate)
                and not cast_column(values, candidate)[1].any()):
            return candidate
    return None


def _wider_types(kind: pa.DataType) -> tuple[pa.DataType, ...]:
    """Widenings, narrowest first, each holding every value the column can hold: int/smallint ->
    bigint -> double (exact for them) or numeric; bigint -> numeric(38,9); real -> double;
    numeric(p,s) -> numeric(38,s) (the scale the table asked for is kept)."""
    if pa.types.is_int64(kind) or pa.types.is_uint64(kind) or pa.types.is_uint32(kind):
        # A double cannot hold every bigint exactly: numeric keeps the stored values and takes fractions.
        return (pa.decimal128(38, 9),)
    if pa.types.is_integer(kind):
        return (pa.int64(), pa.float64(), pa.decimal128(38, 9))
    if pa.types.is_float32(kind):
        return (pa.float64(),)
    if pa.types.is_decimal(kind):
        return (pa.decimal128(38, kind.scale),)
    return ()


def held_rows(rows: pa.Table, held: dict[str, str]) -> np.ndarray:
    """Rows with a value in a column the table does not have yet (manual mode)."""
    mask = np.zeros(rows.num_rows, dtype=bool)
    for name in held:
        if name in rows.column_names:
            mask |= np.asarray(pc.is_valid(rows.column(name)).to_numpy(zero_copy_only=False), dtype=bool)
    return mask
