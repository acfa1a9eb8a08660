"""An upsert's rows when the batch lacks some of the table's columns: Snowflake's upsert here is
a delete and a load (see `transaction`), which would leave such a column NULL in every replaced
row where a `MERGE` (and every other destination's upsert) keeps its value. So before the
delete, the values of the columns the batch lacks are read for the batch's keys (bound as
parameters, `KEYS_PER_READ` at a time) and the rows whose key exists are loaded with them; rows
with new keys are loaded without them, so the columns' defaults apply as in an insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.schema import Column
from conduitd.destinations.snowflake.dialect import quote
from conduitd.destinations.snowflake.driver import SnowflakeDriver
from conduitd.destinations.snowflake.load import load_table

KEYS_PER_READ = 1000


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # A type conduitd carries as text (TIME, GEOGRAPHY...): its text, which Snowflake parses back.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


async def current_values(driver: SnowflakeDriver, target: str, keys: pa.Table, key_columns: Sequence[Column],
                         absent: Sequence[Column]) -> pa.Table:
    """The rows of `target` whose key is in `keys`: their key columns (typed as in `keys`) and the
    `absent` columns (typed as the catalog says)."""
    bound = [tuple(r.values()) for r in load_table(keys.cast(pa.schema([pa.field(c.name, c.arrow)
                                                                        for c in key_columns])),
                                                   key_columns).to_pylist()]
    names = [c.name for c in key_columns]
    match = "(" + ", ".join(quote(n) for n in names) + ")"
    row = "(" + ", ".join(["?"] * len(names)) + ")"
    picked = ", ".join(quote(n) for n in [*names, *(c.name for c in absent)])
    found: list[Sequence[Any]] = []
    for start in range(0, len(bound), KEYS_PER_READ):
        part = bound[start:start + KEYS_PER_READ]
        found += await driver.fetch(f"SELECT {picked} FROM {target} WHERE {match} IN ({', '.join([row] * len(part))})",
                                    [v for r in part for v in r])
    arrays = [_array([r[i] for r in found], c.arrow) for i, c in enumerate([*key_columns, *absent])]
    table = pa.table(arrays, names=[*names, *(c.name for c in absent)])
    return table.cast(pa.schema([*(keys.schema.field(n) for n in names), *list(table.schema)[len(names):]]))


def split(rows: pa.Table, key: Sequence[str], current: pa.Table) -> tuple[pa.Table, pa.Table]:
    """`rows` whose key is in `current`, with `current`'s other columns joined on; and the others."""
    if not current.num_rows:
        return rows.slice(0, 0), rows
    numbered = rows.append_column("__conduitd_row", pa.array(range(rows.num_rows), pa.int64()))
    matched = numbered.join(current, keys=list(key), join_type="inner", use_threads=False)
    order = pc.sort_indices(matched.column("__conduitd_row"))
    matched = matched.take(order).drop_columns(["__conduitd_row"])
    fresh = numbered.join(current.select(list(key)), keys=list(key), join_type="left anti", use_threads=False)
    fresh = fresh.take(pc.sort_indices(fresh.column("__conduitd_row"))).drop_columns(["__conduitd_row"])
    return matched, fresh
