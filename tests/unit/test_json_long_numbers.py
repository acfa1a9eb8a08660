"""JSON numbers that a double does not hold are never silently rounded: a top-level field is read
exactly (a decimal up to 76 digits, else exact text), a record holding one inside an array or an
object goes to the DLQ with the reason (issue 8, item 2: numbers over 38 digits, or with digits
beyond a double's 17, fell back to a double)."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position


def at(offset: int) -> Position:
    return {"offset": offset}


def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from("0123456789"), min_size=low, max_size=high)


LONG_INTEGERS = st.tuples(st.sampled_from(["", "-"]), st.sampled_from("123456789"), digits(17, 100)).map("".join)
LONG_FRACTIONS = st.tuples(st.sampled_from(["", "-"]), st.sampled_from("123456789"), digits(0, 50), digits(1, 60)
                           ).map(lambda p: f"{p[0]}{p[1]}{p[2]}.{p[3]}").filter(
    lambda t: len(t.lstrip("-").replace(".", "")) >= 18)
EXPONENTS = st.tuples(st.sampled_from(["1", "-2.5", "7.25"]), st.integers(-999, 999)).map(lambda p: f"{p[0]}e{p[1]}")
SHORT = st.sampled_from(["0", "1.5", "-7", "0.1", "1e22", "3.14159", "100", "2.0"])
NUMBERS = LONG_INTEGERS | LONG_FRACTIONS | EXPONENTS | SHORT


def held_by_a_double(text: str) -> bool:
    value = float(text)
    return value not in (float("inf"), float("-inf")) and Decimal(repr(value)) == Decimal(text)


@settings(max_examples=300)
@given(st.lists(NUMBERS | st.none(), min_size=1, max_size=6))
def test_every_top_level_number_reads_back_as_written(numbers: list[str | None]) -> None:
    block = b"".join(b'{"id":%d,"n":%s}\n' % (i, (n or "null").encode()) for i, n in enumerate(numbers))
    rows, rejects, _ = decode_jsonl_lines(block, "p", at)
    beyond = [i for i, n in enumerate(numbers) if n is not None and abs(Decimal(n)) > Decimal("1.7976931348623157e308")]
    # Beyond any double: refused by the JSON parser with its reason (never made infinite).
    assert [orjson_id(r.payload) for r in rejects] == beyond
    assert all("infinity" in r.reason for r in rejects)
    numbers = [n for i, n in enumerate(numbers) if i not in beyond]
    if not numbers:
        return
    column = rows.column("n")
    read = column.to_pylist()
    for written, value in zip(numbers, read, strict=True):
        if written is None:
            assert value is None
        elif pa.types.is_floating(column.type):
            assert held_by_a_double(written) and Decimal(repr(value)) == Decimal(written)
        else:  # a decimal, or exact text where no decimal holds the values
            assert Decimal(str(value)) == Decimal(written), (written, value, column.type)
    if any(n is not None and not held_by_a_double(n) for n in numbers):
        assert not pa.types.is_floating(column.type)


@settings(max_examples=150)
@given(st.lists(st.tuples(NUMBERS, st.sampled_from(["list", "object", "top"])), min_size=1, max_size=6))
def test_a_nested_number_a_double_does_not_hold_dead_letters_its_record_only(
        items: list[tuple[str, str]]) -> None:
    shapes = {"list": '{"id":%d,"l":[%s]}', "object": '{"id":%d,"o":{"v":%s}}', "top": '{"id":%d,"t":%s}'}
    lines = [(shapes[shape] % (i, number)).encode() for i, (number, shape) in enumerate(items)]
    rows, rejects, _ = decode_jsonl_lines(b"\n".join(lines) + b"\n", "p", at)
    infinite = {i for i, (number, _) in enumerate(items) if abs(Decimal(number)) > Decimal("1.7976931348623157e308")}
    # A nested field is read as doubles when one of its numbers in the block is not an int64.
    doubles = {shape for number, shape in items if not in_int64(number)}
    refused = {i for i, (number, shape) in enumerate(items)
               if shape != "top" and shape in doubles and not held_by_a_double(number)}
    assert sorted(orjson_id(r.payload) for r in rejects) == sorted(refused | infinite)
    assert all(("inside an array or object" in r.reason and "a double would change it" in r.reason)
               or "infinity" in r.reason for r in rejects)
    refused |= infinite
    kept = rows.column("id").to_pylist() if rows.num_rows else []
    assert sorted(kept) == sorted(set(range(len(items))) - refused)
    ends = [sum(len(line) + 1 for line in lines[:i + 1]) for i in sorted(refused)]
    assert sorted(r.position["offset"] for r in rejects) == ends


def in_int64(text: str) -> bool:
    """An integer an int64 holds: alone in its array or object it is read as one, not as a double."""
    return text.lstrip("-").isdigit() and -(2**63) <= int(text) < 2**63


def orjson_id(payload: str) -> int:
    return int(payload.split(",", 1)[0].removeprefix('{"id":'))


def test_the_examples_of_the_issue() -> None:
    block = (b'{"a":123456789012345678901234567890123456789012}\n'
             b'{"a":1.0000000000000000000000001}\n'
             b'{"a":12345678901234567890123456789012345678901234567890123456789012345678901234567890}\n')
    rows, rejects, _ = decode_jsonl_lines(block, "p", at)
    assert not rejects
    assert rows.column("a").to_pylist() == ["123456789012345678901234567890123456789012",
                                            "1.0000000000000000000000001",
                                            "12345678901234567890123456789012345678901234567890123456789012345678901234567890"]
    rows, _, _ = decode_jsonl_lines(block.splitlines(keepends=True)[0] + block.splitlines(keepends=True)[1], "p", at)
    assert rows.schema.field("a").type == pa.decimal256(76, 25)


def test_number_like_runs_inside_strings_cost_no_second_parse() -> None:
    """UUIDs and ids hold runs such as "9e338" or "-7e6265": they are in strings, not numbers, so
    no line is parsed again for them (the benchmark's orders made 16% of lines go through Python)."""
    from conduitd.core.jsonnumbers import _rows_of_unheld_tokens

    lines = [b'{"u":"51431193-e6c3-4339-9a2b-8f1ff1fd42a2","v":"ab-7e6265cd","w":"x9e338y","n":1.5}',
             b'{"u":"0038e741-e840-450e-821a-123456789012345678","n":2}']
    assert _rows_of_unheld_tokens(b"\n".join(lines) + b"\n") == []
    found = [b'{"n":1.5}', b'{"n": 1.2345678901234567891}', b'{"a":[1, 12345678901234567890123]}']
    assert _rows_of_unheld_tokens(b"\n".join(found) + b"\n") == [1, 2]
    # Exponents too large or too small are found by value (inf; 0 or subnormal), not by text.
    rows, rejects, _ = decode_jsonl_lines(b'{"n":1e-400}\n{"n":0.0}\n{"n":1.5}\n', "p", at)
    assert not rejects and [Decimal(str(v)) for v in rows.column("n").to_pylist()] == [
        Decimal("1e-400"), Decimal("0.0"), Decimal("1.5")]
