"""The decoder's shortcuts give what the long way gives: a block whose first line holds a
date-like string that a timestamp would not print back is read once, with those fields as
strings, and must equal the two reads (inference, then the timestamps read again as strings);
the screen for too-deep lines agrees with counting each line's brackets."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conduitd.core.decode as decode
from conduitd.core.nesting import too_deep
from conduitd.core.records import Position

DATES = st.sampled_from(["2026-01-01T10:00:00Z", "2026-01-01T10:00:00.120Z", "2026-01-01", "2026-01-01 10:00",
                         "2026-01-01T10:00:00+02:00", "2026-13-45", "not a date", "2026-01-01x"])
VALUES = st.one_of(st.none(), DATES, st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False,
                                                                    width=32),
                   st.booleans(), st.fixed_dictionaries({"at": DATES}), st.lists(DATES, max_size=2))
RECORDS = st.dictionaries(st.sampled_from(["a", "b", "c", "when", "d"]), VALUES, max_size=5)


def at(offset: int) -> Position:
    return {"offset": offset}


def both_ways(block: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[object, ...], tuple[object, ...]]:
    def outcome() -> tuple[object, ...]:
        rows, rejects, kept = decode.decode_jsonl_lines(block, "p", at)
        return (rows.schema, rows.to_pylist(), [(r.position, r.reason) for r in rejects],
                None if kept is None else kept.tolist())

    fast = outcome()
    with monkeypatch.context() as patch:
        patch.setattr(decode, "_read_hinted", lambda block: None)
        slow = outcome()
    return fast, slow


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, min_size=1, max_size=5), DATES)
def test_one_read_equals_two(records: list[dict[str, object]], first_date: str) -> None:
    records = [{"t": first_date, **records[0]}, *records[1:]]
    block = b"\n".join(orjson.dumps(r) for r in records) + b"\n"
    with pytest.MonkeyPatch.context() as patch:
        fast, slow = both_ways(block, patch)
    assert fast == slow


def test_the_benchmark_shape_is_read_once_and_keeps_strings_and_order(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [b'{"id":1,"created_at":"2026-01-01T00:00:01.049Z","updated_at":"2026-01-01T02:38:16Z","n":{"k":1}}',
             b'{"id":2,"created_at":"2026-01-01T00:00:02.5Z","x":"2026-01-02T00:00:00Z","updated_at":"2026-01-01T02:38:17Z"}']
    block = b"\n".join(lines) + b"\n"
    rows, rejects, kept = decode.decode_jsonl_lines(block, "p", at)
    assert (rejects, kept) == ([], None)
    assert rows.column_names == ["id", "created_at", "updated_at", "n", "x"]
    assert rows.schema.field("updated_at").type == pa.string()
    assert rows.column("updated_at").to_pylist() == ["2026-01-01T02:38:16Z", "2026-01-01T02:38:17Z"]
    assert rows.column("x").to_pylist() == [None, "2026-01-02T00:00:00Z"]  # not in the first line: read again
    monkeypatch.undo()
    fast, slow = both_ways(block, monkeypatch)
    assert fast == slow


def test_dates_all_in_the_first_line_take_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    block = (b'{"id":1,"a":"2026-01-01T00:00:01.049Z","b":"2026-01-01T02:38:16Z"}\n'
             b'{"id":2,"a":"2026-01-01T00:00:02.5Z","b":"2026-01-01T02:38:17Z"}\n')
    reads: list[bool] = []
    real = decode.pajson.read_json

    def counted(*args: object, **kwargs: object) -> pa.Table:
        reads.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(decode.pajson, "read_json", counted)
    rows, _, _ = decode.decode_jsonl_lines(block, "p", at)
    assert len(reads) == 1
    assert rows.column("b").to_pylist() == ["2026-01-01T02:38:16Z", "2026-01-01T02:38:17Z"]


def test_a_block_of_exact_timestamps_is_not_hinted() -> None:
    block = b'{"t":"2026-01-01T10:00:00Z"}\n{"t":"2026-01-02T10:00:00Z"}\n'
    assert decode._read_hinted(block) is None
    rows, _, _ = decode.decode_jsonl_lines(block, "p", at)
    assert rows.schema.field("t").type == pa.timestamp("s", tz="UTC")


def _deep_by_counting(block: bytes, limit: int) -> bool:
    lines = block.replace(b"\r", b"\n").split(b"\n")
    return any(line.count(b"{") + line.count(b"[") > limit for line in lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='{[]}"\\ \n\ra', max_size=40), max_size=6), st.integers(1, 6))
def test_the_depth_screen_misses_no_line(pieces: list[str], limit: int) -> None:
    block = "".join(pieces).encode()
    if not _deep_by_counting(block, limit):
        assert len(too_deep(block, limit)) == 0
