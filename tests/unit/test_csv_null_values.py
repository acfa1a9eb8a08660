"""CSV null tokens (issue 12, item 6): the file source's `null_values` (default "", NULL, N/A, NaN,
as the seed tool read them) become null; a quoted token stays text, and `null_values: []` keeps
every value as it is written."""

from __future__ import annotations

from conduitd.config import CSV_NULL_VALUES
from conduitd.core.csvdecode import decode_csv_rows
from conduitd.core.records import Position


def at(offset: int) -> Position:
    return {"offset": offset}


BLOCK = b'1,NULL,N/A\n2,NaN,\n3,"NULL",null\n4,x,00501\n'


def test_the_seed_tools_tokens_are_null_and_quoted_ones_stay_text() -> None:
    rows, rejects, _ = decode_csv_rows(BLOCK, ["id", "a", "b"], ",", "f.csv", at, null_values=CSV_NULL_VALUES)
    assert rejects == []
    assert rows.column("a").to_pylist() == [None, None, "NULL", "x"]
    assert rows.column("b").to_pylist() == [None, None, "null", "00501"]  # case-sensitive; leading zeros kept


def test_no_null_values_keeps_every_value_as_written() -> None:
    rows, _, _ = decode_csv_rows(BLOCK, ["id", "a", "b"], ",", "f.csv", at, null_values=())
    assert rows.column("a").to_pylist() == ["NULL", "NaN", "NULL", "x"]
    assert rows.column("b").to_pylist() == ["N/A", "", "null", "00501"]


def test_custom_tokens() -> None:
    rows, _, _ = decode_csv_rows(b"1,-\n2,x\n", ["id", "a"], ",", "f.csv", at, null_values=("-",))
    assert rows.column("a").to_pylist() == [None, "x"]
