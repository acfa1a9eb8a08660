"""The REST source's pure parts: pagination (first and next requests, the Link header, records
paths), the incremental sieve, cutting a page into chunks, and Retry-After."""

from __future__ import annotations

from typing import Any

import pytest

from conduitd.retryafter import retry_after
from conduitd.sources.rest.client import parse_json
from conduitd.sources.rest.incremental import Sieve
from conduitd.sources.rest.pages import (
    MISSING,
    PageError,
    PageRequest,
    first_request,
    next_link,
    next_request,
    records_at,
    value_at,
)
from conduitd.sources.rest.rows import Read, cut, decode
from conduitd.sources.rest.settings import CursorPages, LinkPages, NumberedPages, OffsetPages, OnePage

BASE = "https://api.example.com/v1/items"


def test_cursor_pages_follow_the_token_until_there_is_none() -> None:
    style = CursorPages(type="cursor", cursor_path="meta.next", cursor_param="after", size_param="n", size=2)
    first = first_request(style, {"q": "x"})
    assert first == PageRequest(None, {"q": "x", "n": "2"})
    second = next_request(style, first, {"meta": {"next": "abc"}}, None, 2, BASE)
    assert second == PageRequest(None, {"q": "x", "n": "2", "after": "abc"})
    assert next_request(style, second, {"meta": {"next": 17}}, None, 2, BASE) == \
        PageRequest(None, {"q": "x", "n": "2", "after": "17"})
    for ending in ({"meta": {"next": None}}, {"meta": {"next": ""}}, {"meta": {}}, {}, {"meta": {"next": "abc"}}):
        assert next_request(style, second, ending, None, 2, BASE) is None, ending  # "abc" again: no loop
    assert next_request(style, first, {"meta": {"next": "abc"}}, None, 0, BASE) is None, "an empty page is the last"


def test_offset_pages_advance_by_what_came_and_end_on_a_short_page() -> None:
    style = OffsetPages(type="offset", offset_param="skip", limit_param="take", limit=100)
    first = first_request(style, {})
    assert first.params == {"skip": "0", "take": "100"}
    second = next_request(style, first, [], None, 100, BASE)
    assert second is not None and second.params == {"skip": "100", "take": "100"}
    assert next_request(style, second, [], None, 99, BASE) is None


def test_numbered_pages_count_from_the_first_page() -> None:
    style = NumberedPages(type="page", page_param="p", size_param=None, size=50, first_page=0)
    first = first_request(style, {"a": "1"})
    assert first.params == {"a": "1", "p": "0"}
    second = next_request(style, first, None, None, 50, BASE)
    assert second is not None and second.params == {"a": "1", "p": "1"}
    assert next_request(style, second, None, None, 49, BASE) is None


def test_link_pages_follow_rel_next_resolved_against_the_page_url() -> None:
    style = LinkPages(type="link")
    first = first_request(style, {"since": "5"})
    header = '<https://api.example.com/v1/items?page=1>; rel="prev", </v1/items?page=3&since=5>; rel="next"'
    second = next_request(style, first, [], header, 10, BASE)
    assert second == PageRequest("https://api.example.com/v1/items?page=3&since=5", {})
    assert next_request(style, second, [], '<https://x/a?page=1>; rel="first"', 10, BASE) is None
    assert next_request(style, second, [], None, 10, BASE) is None
    assert next_request(OnePage(type="none"), first, [], header, 10, BASE) is None


@pytest.mark.parametrize(("header", "target"), [
    ('<https://a/?p=2>; rel="next"', "https://a/?p=2"),
    ("<https://a/?p=2>; rel=next", "https://a/?p=2"),
    ('<https://a/?p=1>; rel="prev first", <https://a/?p=2>; title="x, y"; rel="next last"', "https://a/?p=2"),
    ('<https://a/?p=2>; REL="Next"', "https://a/?p=2"),
    ('<https://a/?p=2>; rel="nextish"', None),
    ("", None),
    ("garbage", None),
])
def test_the_next_link_of_a_link_header(header: str, target: str | None) -> None:
    assert next_link(header) == target


def test_records_and_values_at_dotted_paths() -> None:
    body = {"data": {"items": [{"id": 1}, {"id": 2}]}, "list": [[1], [2]]}
    assert records_at(body, "data.items") == [{"id": 1}, {"id": 2}]
    assert records_at([{"id": 1}], "") == [{"id": 1}]
    assert records_at({"data": None}, "data") == []
    assert value_at(body, "list.1.0") == 2
    assert value_at(body, "data.nope") is MISSING
    with pytest.raises(PageError, match="found nothing"):
        records_at(body, "items")
    with pytest.raises(PageError, match="found dict"):
        records_at(body, "data")


def test_a_page_request_round_trips_through_json() -> None:
    request = PageRequest("https://x/?a=1", {"b": "2"})
    assert PageRequest.from_json(request.to_json()) == request
    assert PageRequest.from_json({"params": {"n": 5}}) == PageRequest(None, {"n": "5"})


def admitted(sieve: Sieve, values: list[Any]) -> list[Any]:
    return [v for v in values if sieve.admit({"t": v}) is None]


def test_the_sieve_skips_what_was_handed_over_even_across_ties() -> None:
    sieve = Sieve("t", None)
    assert admitted(sieve, [1, 2, 2]) == [1, 2, 2]
    assert sieve.position == {"value": 2, "ties": 2}
    # A pass from that position, the endpoint inclusive: the two 2s already read are skipped.
    again = Sieve("t", sieve.position)
    assert again.filter_value == 2
    assert admitted(again, [2, 2, 2, 3, 3]) == [2, 3, 3]
    assert again.position == {"value": 3, "ties": 2}
    # An endpoint that does not filter: everything before the value is skipped too.
    assert admitted(Sieve("t", {"value": 2, "ties": 1}), [1, 2, 2, 3]) == [2, 3]


def test_the_sieve_starts_at_start_and_rejects_records_without_a_usable_value() -> None:
    sieve = Sieve("a.t", None, start="2024-01-02")
    assert sieve.filter_value == "2024-01-02"
    assert sieve.admit({"a": {"t": "2024-01-01T00:00:00Z"}}) == ""
    assert sieve.admit({"a": {"t": "2024-01-03T00:00:00Z"}}) is None
    assert "missing or null" in (sieve.admit({"a": {}}) or "")
    assert "missing or null" in (sieve.admit({"a": {"t": None}}) or "")
    assert "not a number or text" in (sieve.admit({"a": {"t": [1]}}) or "")
    assert "unlike the committed value" in (sieve.admit({"a": {"t": 5}}) or "")
    assert sieve.position == {"value": "2024-01-03T00:00:00Z", "ties": 1}
    assert Sieve("t", None).position is None
    assert admitted(Sieve("t", None), [3, 1]) == [3, 1], "out of order: handed over, not lost"


def test_a_page_is_cut_into_chunks_of_at_most_max_rows_with_rejects_in_their_place() -> None:
    reads = [Read({"id": i}, {"skip": i + 1}) for i in range(5)]
    reads.insert(2, Read("text", {"skip": 99}))
    groups = cut(reads, 2)
    assert [[r.after["skip"] for r in g] for g in groups] == [[1, 2, 99], [3, 4], [5]]
    piece = decode(groups[0], "p")
    assert piece.rows.column("id").to_pylist() == [0, 1] and piece.end == {"skip": 99}
    [reject] = piece.rejects
    assert reject.position == {"skip": 99} and "not a JSON object (a string)" in reject.reason
    assert reject.payload == '"text"'
    only = decode([Read({"id": 1}, {"v": 1}, "the incremental field 't' is missing or null")], "p")
    assert only.rows.num_rows == 0 and only.rejects[0].reason.startswith("the incremental field")


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_integers_beyond_64_bits_are_read_and_decoded_exactly() -> None:
    body = parse_json(b'[{"id": 1, "big": 123456789012345678901234567890}]')
    assert body[0]["big"] == 123456789012345678901234567890
    piece = decode([Read(body[0], {"skip": 1})], "p")
    assert piece.rejects == () and str(piece.rows.column("big")[0]) == "123456789012345678901234567890"
    with pytest.raises(ValueError):
        parse_json(b"<html>busy</html>")
