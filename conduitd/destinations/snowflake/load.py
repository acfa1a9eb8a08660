"""The rows of a write as Snowflake loads them (pure; runs in a worker thread): columns renamed
`c0`, `c1`, ... (a load never names a column from data: the target's names are quoted only in
the statement), and values in the form the column parses exactly from any source, a staged
Parquet file or a bound parameter:

    timestamps      ISO 8601 text in UTC with its offset (`2024-05-01T12:00:00.123456+00:00`)
    dates           ISO 8601 text
    decimals        their exact text
    anything else   as it is (numbers, booleans, text, bytes)

Upserts keep the last row of each key (a `MERGE` whose source repeats a key is refused by
Snowflake as nondeterministic)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conduitd.core.schema import Column


def load_column(values: pa.Array) -> pa.Array:
    """One column's values as they are loaded (see the module docstring)."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        utc = values.cast(pa.timestamp(kind.unit, tz="UTC")) if kind.tz is None else values
        micros = utc.cast(pa.timestamp("us", tz="UTC"))
        text = pc.strftime(micros, format="%Y-%m-%dT%H:%M:%S")  # %S holds the microseconds
        return pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    if pa.types.is_date(kind) or pa.types.is_decimal(kind):
        return values.cast(pa.string())
    return values


def load_table(rows: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """`rows` (cast to `columns` already) as a table of `c0`, `c1`, ... ready to load."""
    arrays = [load_column(rows.column(i).combine_chunks()) for i in range(len(columns))]
    return pa.table(arrays, names=[f"c{i}" for i in range(len(columns))])


def last_of_each_key(rows: pa.Table, key: Sequence[str]) -> pa.Table:
    """`rows` keeping only the last row of each key, in their order."""
    numbered = rows.select(list(key)).append_column("__row", pa.array(range(rows.num_rows), pa.int64()))
    last = numbered.group_by(list(key), use_threads=False).aggregate([("__row", "max")]).column("__row_max")
    if len(last) == rows.num_rows:
        return rows
    return rows.take(pc.sort_indices(last))


def write_parquet(table: pa.Table, path: str) -> int:
    """Write the load file; its size in bytes."""
    pq.write_table(table, path, compression="snappy")
    return os.path.getsize(path)
