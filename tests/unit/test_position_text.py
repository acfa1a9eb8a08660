"""A stored position is recognised whatever JSON text holds it (`stored_as`), the compare-and-set
of the SQL destinations and ClickHouse rely on it; `position_text` stays canonical."""

from __future__ import annotations

from conduitd.core.records import position_text, stored_as


def test_canonical_text_is_sorted_and_compact() -> None:
    assert position_text({"offset": 3, "a": [1, "x"]}) == '{"a":[1,"x"],"offset":3}'


def test_other_text_of_the_same_json_is_the_same_position() -> None:
    position = {"cursor": "2026-01-01 00:00:00+00", "key": ["7"], "lease": {"owner": "a", "epoch": 2}}
    assert stored_as(position_text(position), position)
    assert stored_as('{ "lease" : {"epoch": 2, "owner": "a"}, "key": ["7"],\n "cursor": "2026-01-01 00:00:00+00"}',
                     position)


def test_another_position_or_broken_text_is_not() -> None:
    assert not stored_as('{"offset": 4}', {"offset": 3})
    assert not stored_as('{"offset": "3"}', {"offset": 3})
    assert not stored_as('{"offset": 3', {"offset": 3})
    assert not stored_as("null", {"offset": 3})
