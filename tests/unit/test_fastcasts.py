"""The arithmetic cast of doubles to decimals gives exactly what `conform` gives (shortest text
read as a decimal), and stands aside wherever it could not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.fastcasts import doubles_to_decimal, precast
from conduitd.core.schema import Column, conform

DOUBLES = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10**15, 10**15).flatmap(lambda n: st.integers(0, 8).map(lambda s: n / 10**s)),
                    st.sampled_from([0.0, -0.0, 3703.6, 0.1, 0.29, 1e-5, 9999999999.99, 1e10, 5e-324]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), DOUBLES), min_size=1, max_size=20), st.integers(1, 18), st.integers(0, 8))
def test_same_as_conform(values: list[float | None], precision: int, scale: int) -> None:
    scale = min(scale, precision)
    column = Column("x", pa.decimal128(precision, scale), f"numeric({precision},{scale})")
    rows = pa.table({"x": pa.array(values, pa.float64())})
    fast = doubles_to_decimal(rows.column("x").combine_chunks(), column.arrow)
    reference, failures, _ = conform(rows, {"x": column})
    if fast is not None:
        assert not failures
        assert fast.type == column.arrow
        assert fast.to_pylist() == reference.column("x").to_pylist()
    via_precast, failures_after, _ = conform(precast(rows, {"x": column}), {"x": column})
    assert via_precast.equals(reference)
    assert [(f.row, f.reason) for f in failures_after] == [(f.row, f.reason) for f in failures]


def test_usual_amounts_take_the_fast_cast() -> None:
    amounts = np.round(np.random.default_rng(3).uniform(-5e5, 5e5, 10_000), 2)
    fast = doubles_to_decimal(pa.array(amounts), pa.decimal128(12, 2))
    assert fast is not None
    assert [str(v) for v in fast.to_pylist()[:50]] == [f"{a:.2f}" for a in amounts[:50]]
    assert doubles_to_decimal(pa.array([0.125]), pa.decimal128(12, 2)) is None  # rounds: conform's way
    assert doubles_to_decimal(pa.array([1.5]), pa.decimal128(16, 2)) is None  # beyond 15 digits
