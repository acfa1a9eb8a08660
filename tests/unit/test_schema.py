"""Casting a batch to a table's columns: vectorised, exact, and refusing what does not fit."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from conduitd.core.schema import Column, conform, refine_types


def test_values_that_cast_are_kept_and_failures_name_row_column_and_value() -> None:
    rows = pa.table({"id": ["1", "x", "3"], "n": [1, 2, 3]})
    columns = {"id": Column("id", pa.int64(), "bigint"), "n": Column("n", pa.int64(), "bigint")}
    table, failures, kept = conform(rows, columns)
    assert table.to_pylist() == [{"id": 1, "n": 1}, {"id": 3, "n": 3}]
    assert [(f.row, f.column, f.value) for f in failures] == [(1, "id", "x")]
    assert "cannot store 'x' as bigint" in failures[0].reason
    assert kept.tolist() == [0, 2]


def test_floats_become_exact_decimals() -> None:
    rows = pa.table({"amount": [3703.6, 0.1, 12.345]})
    table, failures, _ = conform(rows, {"amount": Column("amount", pa.decimal128(12, 2), "numeric(12,2)")})
    assert failures == []
    assert table.column("amount").to_pylist() == [Decimal("3703.60"), Decimal("0.10"), Decimal("12.35")]


@pytest.mark.parametrize(("values", "expected"), [
    ([3703.6, 0.1, -0.5, None], ["3703.60", "0.10", "-0.50", None]),  # every value fits the scale
    ([0.125, -0.125, 2.675], ["0.13", "-0.13", "2.68"]),  # rounded half away from zero, from the text
])
def test_floats_become_decimals_of_the_column_scale(values: list[float | None], expected: list[str | None]) -> None:
    column = Column("amount", pa.decimal128(12, 2), "numeric(12,2)")
    table, failures, _ = conform(pa.table({"amount": pa.array(values, pa.float64())}), {"amount": column})
    assert failures == []
    assert table.column("amount").to_pylist() == [None if e is None else Decimal(e) for e in expected]


def test_a_float_too_big_for_the_decimal_column_is_refused() -> None:
    rows = pa.table({"amount": [1.5, 12345678901.25]})
    table, failures, _ = conform(rows, {"amount": Column("amount", pa.decimal128(12, 2), "numeric(12,2)")})
    assert table.column("amount").to_pylist() == [Decimal("1.50")]
    assert [f.row for f in failures] == [1]


def test_a_fractional_float_is_refused_by_an_integer_column() -> None:
    rows = pa.table({"n": [1.0, 2.5]})
    table, failures, _ = conform(rows, {"n": Column("n", pa.int64(), "bigint")})
    assert table.column("n").to_pylist() == [1]
    assert [f.row for f in failures] == [1]


def test_nested_values_become_json_text() -> None:
    rows = pa.table({"doc": [{"a": 1, "b": [1, 2]}, None]})
    table, _, _ = conform(rows, {"doc": Column("doc", pa.string(), "jsonb", json=True)})
    assert table.column("doc").to_pylist() == ['{"a":1,"b":[1,2]}', None]


def test_timestamps_from_text_with_and_without_zone() -> None:
    rows = pa.table({"at": ["2026-01-01T10:00:00+02:00", "2026-01-01 08:00:00", "yesterday"]})
    table, failures, _ = conform(rows, {"at": Column("at", pa.timestamp("us", tz="UTC"), "timestamptz")})
    values = table.column("at").cast(pa.int64()).to_pylist()
    assert values[0] == values[1]  # 10:00+02:00 is 08:00 UTC; a zone-less time is taken as UTC
    assert [f.value for f in failures] == ["yesterday"]


def test_columns_not_in_the_table_are_left_out() -> None:
    table, _, _ = conform(pa.table({"a": [1], "b": [2]}), {"a": Column("a", pa.int64(), "bigint")})
    assert table.column_names == ["a"]


def test_refine_types_only_turns_all_timestamp_columns_into_timestamps() -> None:
    refined = refine_types(pa.table({
        "at": ["2026-01-01T00:00:00Z", None], "mixed": ["2026-01-01T00:00:00Z", "soon"], "code": ["2026", "2027"]}))
    assert refined.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert refined.schema.field("mixed").type == pa.string()
    assert refined.schema.field("code").type == pa.string()
