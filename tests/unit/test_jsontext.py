"""Vectorised JSON text equals what orjson writes for the same values."""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pyarrow as pa
import pytest

from conduitd.core.jsontext import to_json_text


def reference(values: list[object]) -> list[str | None]:
    return [None if v is None else orjson.dumps(v).decode() for v in values]


@pytest.mark.parametrize("values", [
    [{"a": 1, "b": "x", "c": [1, 2, None], "d": {"e": True, "f": None}}, None, {"a": None, "b": None, "c": None,
                                                                              "d": None}],
    [[1, 2], [], None, [None]],
    [["a", 'q"uote', "back\\slash", "new\nline\ttab\rcr", "ünï €", ""]],
    [{"x": 1.5, "y": -0.25, "z": 1e20}],
    [{"deep": [{"k": [[1], [2, 3]]}, {"k": []}]}],
    [{"ctrl": "bell\x07"}],
    [{"ctrl": "bell\x07", "n": 1}, {"ctrl": None, "n": 2}, None, {"ctrl": 'q"\x01', "n": None}],
    [["\x1f", None, "plain"], None, [None]],
    [{"s": "plain", "t": "tab\there"}, {"s": "also plain", "t": "back\\slash"}],
])
def test_matches_orjson(values: list[object]) -> None:
    assert to_json_text(pa.array(values)).to_pylist() == reference(values)


def test_random_nested_values_match_orjson() -> None:
    rng = random.Random(7)

    rows = [{"doc": {"p": [rng.randrange(9) for _ in range(rng.randrange(4))], "q": rng.choice(["s", None])},
             "n": rng.randrange(100)} for _ in range(500)]
    table = pa.Table.from_pylist(rows)
    assert to_json_text(table.column("doc")).to_pylist() == reference([r["doc"] for r in rows])


def test_sliced_and_chunked_arrays() -> None:
    array = pa.array([{"a": [1]}, {"a": [2, 3]}, None, {"a": []}])
    assert to_json_text(array.slice(1, 3)).to_pylist() == ['{"a":[2,3]}', None, '{"a":[]}']
    chunked = pa.chunked_array([array.slice(0, 2), array.slice(2)])
    assert to_json_text(chunked).to_pylist() == ['{"a":[1]}', '{"a":[2,3]}', None, '{"a":[]}']


def test_escapes_are_found_in_a_slice_of_the_strings() -> None:
    strings = pa.array(["plain", 'q"uote', "x"])
    array = pa.StructArray.from_arrays([strings], ["s"])
    assert to_json_text(array.slice(1, 1)).to_pylist() == ['{"s":"q\\"uote"}']
    assert to_json_text(array.slice(2, 1)).to_pylist() == ['{"s":"x"}']


def test_timestamps_and_dates_are_iso_strings() -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    array = pa.array([{"at": stamp, "day": dt.date(2026, 1, 2)}],
                     pa.struct([("at", pa.timestamp("s", tz="UTC")), ("day", pa.date32())]))
    assert to_json_text(array).to_pylist() == ['{"at":"2026-01-02T03:04:05Z","day":"2026-01-02"}']
