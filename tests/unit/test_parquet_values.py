"""Parquet values made writable (NaN -> null, nanoseconds -> microseconds) or rejected (dates outside
years 1..9999), for generated columns, nested ones included: every row is kept or rejected, once."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.sources.parquet_values import make_writable

floats = st.floats() | st.none()  # NaN and infinities included
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.none()
int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.none()
UNITS = ["s", "ms", "us", "ns"]


def has_nan(array: pa.Array) -> bool:
    if pa.types.is_floating(array.type):
        return bool(pc.any(pc.fill_null(pc.is_nan(array), False)).as_py())
    if pa.types.is_struct(array.type):
        return any(has_nan(child) for child in array.flatten())
    if pa.types.is_list(array.type):
        return has_nan(array.flatten())
    return False


def has_nanoseconds(kind: pa.DataType) -> bool:
    if getattr(kind, "unit", None) == "ns":
        return True
    if pa.types.is_struct(kind):
        return any(has_nanoseconds(f.type) for f in kind)
    if pa.types.is_list(kind):
        return has_nanoseconds(kind.value_type)
    return False


@settings(max_examples=100)
@given(st.lists(st.tuples(floats, int64s, int32s, floats), min_size=0, max_size=15), st.sampled_from(UNITS))
def test_every_row_is_written_or_rejected_and_nothing_unwritable_remains(values: list[tuple[Any, ...]],
                                                                          unit: str) -> None:
    ratio = [v[0] for v in values]
    stamps = [v[1] for v in values]
    table = pa.table({
        "id": pa.array(range(len(values)), pa.int64()),
        "ratio": pa.array(ratio, pa.float64()),
        "at": pa.array(stamps, pa.timestamp(unit)),
        "day": pa.array([v[2] for v in values], pa.date32()),
        "nested": pa.array([None if i % 3 == 2 else {"f": v[3], "at": [v[1]]} for i, v in enumerate(values)],
                           pa.struct([("f", pa.float64()), ("at", pa.list_(pa.timestamp(unit)))])),
        "floats": pa.array([[v[0], v[3]] for v in values], pa.list_(pa.float32())),
    })
    rows, rejects = make_writable(table, "f.parquet", 100, lambda row: {"row": row})
    kept = rows.column("id").to_pylist()
    rejected = [json.loads(r.payload)["id"] for r in rejects]
    assert sorted(kept + rejected) == list(range(len(values)))
    assert [r.position for r in rejects] == [{"row": 100 + i + 1} for i in rejected]
    assert all("0001-01-01 to 9999-12-31" in r.reason for r in rejects)
    assert not any(has_nan(column.combine_chunks()) for column in rows.columns)
    assert not any(has_nanoseconds(f.type) for f in rows.schema)
    rows.to_pylist()  # every value left is one Python (and so every destination) can hold
    # a value that was representable stays what it was (to the microsecond)
    before = {i: r for i, r in enumerate(values)}
    for row in rows.to_pylist():
        original = before[row["id"]][0]
        if original is None or np.isnan(original):
            assert row["ratio"] is None
        else:
            assert row["ratio"] == original


def test_whole_microseconds_in_nanosecond_columns_are_kept_exactly() -> None:
    table = pa.table({"at": pa.array([1_700_000_000_123_456_000, None], pa.timestamp("ns", tz="UTC"))})
    rows, rejects = make_writable(table, "f", 0, lambda row: {"row": row})
    assert rejects == [] and rows.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert rows.column("at").cast(pa.int64()).to_pylist() == [1_700_000_000_123_456, None]
