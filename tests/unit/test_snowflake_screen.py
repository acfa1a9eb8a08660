"""The rows Snowflake would refuse, found before the write (`destinations.snowflake.screen`)."""

from __future__ import annotations

import pyarrow as pa

from conduitd.destinations.snowflake.screen import Limits, refused_rows


def test_nulls_in_not_null_columns_and_too_long_values_are_found_with_reasons() -> None:
    rows = pa.table({"id": pa.array([1, None, 3, 4], pa.int64()),
                     "code": ["abc", "ok", "äöüäöü", None],
                     "blob": pa.array([b"12", b"1234", None, b"1"], pa.binary())})
    limits = [Limits("id", nullable=False, has_default=False, max_length=None),
              Limits("code", nullable=True, has_default=False, max_length=5),
              Limits("blob", nullable=True, has_default=False, max_length=3)]
    found = refused_rows(rows, limits)
    assert [row for row, _ in found] == [1, 2]
    assert 'non-nullable column "id"' in found[0][1]
    assert '6 characters is too long for column "code" (at most 5)' in found[1][1], "characters, not bytes"
    assert refused_rows(rows.slice(0, 1), limits) == []


def test_a_not_null_column_the_batch_lacks_refuses_every_row_unless_it_has_a_default() -> None:
    rows = pa.table({"id": [1, 2]})
    assert [r for r, _ in refused_rows(rows, [Limits("must", False, False, None)])] == [0, 1]
    assert refused_rows(rows, [Limits("must", False, True, None)]) == []
    assert refused_rows(rows, [Limits("maybe", True, False, 3)]) == []
