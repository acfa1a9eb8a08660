"""JSON lines at the decoder's limits: any nesting depth, records of any size, other encodings.
Every line ends up exactly once, as a row or as a reject with its reason and its own position,
and whatever is accepted can be written on (JSON text for a jsonb/TEXT column, a DLQ payload)."""

from __future__ import annotations

import json
import sys

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.jsontext import to_json_text
from conduitd.core.nesting import MAX_DEPTH, too_deep
from conduitd.core.records import Position, Reject

DEEP = f"nested deeper than {MAX_DEPTH} levels"


def at(offset: int) -> Position:
    return {"offset": offset}


def nested(shape: list[bool], leaf: str = "1") -> str:
    """JSON text nested len(shape) + 1 levels deep inside the record: True an object, False an
    array, outermost first (built as text: Python's json would recurse)."""
    text = leaf
    for is_object in reversed(shape):
        text = '{"k": ' + text + ', "s": "[{\\"}"}' if is_object else "[" + text + "]"
    return text


def depth_of(shape: list[bool]) -> int:
    return len(shape) + 1  # the record itself is level 1


def decode(block: bytes, **options: object) -> tuple[pa.Table, list[Reject], list[int]]:
    table, rejects, kept = decode_jsonl_lines(block, "p", at, **options)  # type: ignore[arg-type]
    lines = block.count(b"\n")
    return table, rejects, list(range(lines)) if kept is None else [int(k) for k in kept]


def line_ends(lines: list[bytes]) -> list[int]:
    ends, total = [], 0
    for line in lines:
        total += len(line) + 1
        ends.append(total)
    return ends


shapes_of_depth = st.tuples(st.integers(1, 2000), st.randoms(use_true_random=False)).map(
    lambda pair: [pair[1].random() < 0.5 for _ in range(pair[0] - 1)])
"""A nesting of objects and arrays mixed, 1 to 2,000 levels deep (the record included)."""


@settings(max_examples=40)
@given(st.lists(shapes_of_depth | st.lists(st.booleans(), max_size=MAX_DEPTH + 2), min_size=1, max_size=4))
def test_any_depth_is_a_row_or_a_reject_that_says_so(shapes: list[list[bool]]) -> None:
    lines = [(f'{{"id": {i}, "f{i}": ' + nested(shape) + "}").encode() for i, shape in enumerate(shapes)]
    block = b"\n".join(lines) + b"\n"
    table, rejects, kept = decode(block)
    ends = line_ends(lines)
    too_deep_lines = [i for i, shape in enumerate(shapes) if depth_of(shape) > MAX_DEPTH]
    assert sorted(kept + too_deep_lines) == list(range(len(lines)))  # each line exactly once
    assert [(r.reason, r.position) for r in rejects] == [(DEEP, at(ends[i])) for i in too_deep_lines]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # only to parse the expectation with Python's json
    try:
        for row, line in zip(table.to_pylist(), kept, strict=True):
            expected = json.loads(lines[line])
            assert row["id"] == line
            field = f"f{line}"
            # What a jsonb / TEXT column receives, and what a DLQ payload would hold:
            text = to_json_text(table.column(field).slice(table.column("id").to_pylist().index(line), 1))[0]
            assert json.loads(text.as_py()) == expected[field]
            orjson.dumps(row, default=str)
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 330, 100_000])
def test_a_deep_line_among_good_ones(depth: int) -> None:
    """100,000 levels crashed the process inside pyarrow's reader (a stack overflow)."""
    shape = [False] * (depth - 1)  # levels below the record
    good = b'{"id": 1}'
    deep = ('{"id": 2, "a": ' + nested(shape) + "}").encode()
    block = good + b"\n" + deep + b"\n" + good + b"\n"
    table, rejects, kept = decode(block)
    if depth <= MAX_DEPTH:
        assert kept == [0, 1, 2] and not rejects
        to_json_text(table.column("a"))
    else:
        assert kept == [0, 2]
        assert [(r.reason, r.position) for r in rejects] == [(DEEP, at(len(good) + 1 + len(deep) + 1))]
        assert rejects[0].payload.startswith('{"id": 2')


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    inside = '"' + "[{" * 500 + '\\"' + "[" * 500 + '"'
    block = ('{"a": ' + inside + ', "b": "\\\\", "c": [[1]]}\n').encode()
    assert len(too_deep(block)) == 0
    table, rejects, _kept = decode(block)
    assert not rejects and table.column("a")[0].as_py() == inside[1:-1].replace('\\"', '"')


@pytest.mark.parametrize("size", [(1 << 20) - 100, (1 << 20) + 100, 3 * (1 << 20) + 7])
def test_a_long_valid_line_is_read(size: int) -> None:
    """Lines over pyarrow's 1 MiB block were rejected as 'cannot be represented in Arrow'."""
    blob = "x" * size
    block = b'{"id": 1}\n' + orjson.dumps({"id": 2, "blob": blob}) + b'\n{"id": 3}\n'
    table, rejects, kept = decode(block, max_record_bytes=64 << 20)
    assert not rejects and kept == [0, 1, 2]
    assert table.column("blob").to_pylist() == [None, blob, None]


@pytest.mark.parametrize("crlf", [False, True])
def test_a_line_over_max_record_bytes_says_so(crlf: bool) -> None:
    record = orjson.dumps({"id": 2, "blob": "y" * 5000})
    eol = b"\r\n" if crlf else b"\n"
    block = b'{"id": 1}' + eol + record + eol + b'{"id": 3}' + eol
    _table, rejects, kept = decode(block, max_record_bytes=len(record) - 1)
    assert kept == [0, 2]
    (reject,) = rejects
    assert reject.reason == f"record of {len(record)} bytes is over max_record_bytes ({len(record) - 1})"
    assert reject.position == at(len(b'{"id": 1}' + eol + record + eol))
    _, rejects, kept = decode(block, max_record_bytes=len(record))
    assert not rejects and kept == [0, 1, 2]


@pytest.mark.parametrize(("line", "words"), [
    (b'{"a": [1, "x"]}', ["/a/[]", "number", "string"]),
    (b'{"a": {"b": [true, 2]}}', ["/a/b/[]", "boolean", "number"]),
    (b'{"a": [[1], [{"c": 2}]]}', ["/a/[]/[]", "number", "object"]),
])
def test_an_unrepresentable_record_says_which_field_and_why(line: bytes, words: list[str]) -> None:
    _, rejects, kept = decode(b'{"a": null}\n' + line + b"\n")
    (reject,) = rejects
    assert kept == [0]
    assert reject.reason.startswith("record cannot be represented in Arrow: ")
    assert all(w in reject.reason for w in words), reject.reason


def test_latin1_lines_are_read_and_a_line_invalid_in_the_encoding_is_rejected_alone() -> None:
    block = '{"n": "café"}\n'.encode("latin-1") + b'{"n": "\x81"}\n' + '{"n": "ß"}\n'.encode("latin-1")
    table, rejects, kept = decode(block, encoding="latin-1")
    assert table.column("n").to_pylist() == ["café", "\x81", "ß"] and not rejects
    table, rejects, kept = decode(block, encoding="cp1252")  # 0x81 is not a cp1252 character
    assert table.column("n").to_pylist() == ["café", "ß"] and kept == [0, 2]
    (reject,) = rejects
    assert reject.position == at(len(block) - len('{"n": "ß"}\n'))
    assert "cp1252" in reject.reason and reject.payload == '{"n": "\\x81"}'


@settings(max_examples=50)
@given(st.lists(st.tuples(st.text(max_size=20), st.booleans()), min_size=1, max_size=8), st.sampled_from(
    ["utf-8", "latin-1", "cp1252"]))
def test_every_line_in_any_encoding_is_a_row_or_a_reject(values: list[tuple[str, bool]], encoding: str) -> None:
    lines: list[bytes] = []
    for index, (text, corrupt) in enumerate(values):
        raw = orjson.dumps({"id": index, "v": text}).decode().encode(encoding, errors="replace")
        lines.append(raw.replace(b'"v":"', b'"v":"\xff\x81') if corrupt else raw)
    block = b"\n".join(lines) + b"\n"
    table, rejects, kept = decode(block, encoding=encoding)
    rejected = [int(r.position["offset"]) for r in rejects]
    ends = line_ends(lines)
    assert sorted([ends[k] for k in kept] + rejected) == ends  # each line exactly once
    assert (table.column("id").to_pylist() if table.num_rows else []) == kept
    for row in table.to_pylist():
        original = lines[row["id"]].decode(encoding)
        assert orjson.loads(original.encode())["v"] == row["v"]


@pytest.mark.parametrize("before", ['{"v": {"k": [1]}}', '{"v": [1]}', '{"v": 1}'])
def test_a_long_record_after_one_of_another_type_keeps_its_value(before: str) -> None:
    """pyarrow read a record straddling its 1 MiB blocks with the type of the rows before it:
    a string became {"k": null}, or the process crashed."""
    blob = "x" * (3 << 19)
    block = before.encode() + b"\n" + orjson.dumps({"v": blob}) + b'\n{"v": "plain"}\n'
    table, rejects, kept = decode(block, max_record_bytes=64 << 20)
    assert not rejects and kept == [0, 1, 2]
    values = table.column("v").to_pylist()
    assert values[1:] == [blob, "plain"]
    assert json.loads(values[0]) == json.loads(before)["v"]


@pytest.mark.parametrize("text", ["2026-01-31", "2026-01-31 10:00:00", "2026-01-31T10:00:00", "2026-01-31T10:00:00Z",
                                  "2026-01-31T10:00:00.5+02:00"])
def test_date_like_strings_reach_a_text_or_json_column_as_written(text: str) -> None:
    """pyarrow's reader made them timestamps: a text column got "2026-01-31T00:00:00Z"."""
    from conduitd.core.schema import Column, conform

    block = orjson.dumps({"s": text, "doc": {"at": [text]}}) + b"\n"
    table, rejects, _ = decode(block)
    assert not rejects
    cast, failures, _ = conform(table, {"s": Column("s", pa.string(), "text"),
                                        "doc": Column("doc", pa.string(), "jsonb", json=True)})
    assert not failures
    assert cast.column("s").to_pylist() == [text]
    assert json.loads(cast.column("doc")[0].as_py()) == {"at": [text]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet='[]{}"\\ab,:', max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3),
                                                                       children, max_size=3),
    max_leaves=40)


@settings(max_examples=60)
@given(st.lists(st.tuples(json_values, st.integers(0, 300), st.integers(0, 200)), min_size=1, max_size=6))
def test_the_depth_scan_agrees_with_a_parser(parts: list[tuple[object, int, int]]) -> None:
    """Brackets inside strings, escaped quotes, wide (not deep) arrays: only depth counts."""
    from conduitd.core.nesting import value_depth

    lines = []
    for value, depth, width in parts:
        deep = "[" * depth + orjson.dumps(value).decode() + "]" * depth
        lines.append(('{"v": ' + deep + ', "wide": [' + ",".join(["{}"] * width) + "]}").encode())
    block = b"\n".join(lines) + b"\n"
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        expected = [s for s, line in zip(starts, lines, strict=True) if value_depth(json.loads(line)) > MAX_DEPTH]
    finally:
        sys.setrecursionlimit(old)
    assert too_deep(block).tolist() == expected
