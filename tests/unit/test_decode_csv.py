"""CSV values are never altered: columns are text unless every value round-trips through a
type; a row that cannot be read (wrong number of fields, bytes invalid in the encoding, a broken
quote, too long) is rejected alone, at the position just after its own line; every line ends up
exactly once, as a row or as a reject."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.decode import decode_csv
from conduitd.core.records import Position, Reject
from conduitd.core.schema import Column, conform

TEXT = Column("v", pa.string(), "text")


def at(offset: int) -> Position:
    return {"offset": offset}


def decode(block: bytes, columns: list[str], **options: object) -> tuple[pa.Table, list[Reject]]:
    return decode_csv(block, columns, ",", "p", at, **options)  # type: ignore[arg-type]


def as_text(table: pa.Table) -> dict[str, list[str | None]]:
    """What a text column of an existing table receives: the pipeline's own cast."""
    cast, failures, _ = conform(table, {n: Column(n, pa.string(), "text") for n in table.column_names})
    assert not failures
    return {n: cast.column(n).to_pylist() for n in cast.column_names}


@pytest.mark.parametrize(("values", "kind"), [
    (["00501", "501"], pa.string()), (["501", "12"], pa.int64()), (["+3", "4"], pa.string()),
    ([" 7", "8"], pa.string()), (["1.50", "2"], pa.string()), (["1.5", "2", "-0.25"], pa.float64()),
    (["1e3"], pa.string()), (["NaN", "1.5"], pa.string()), (["inf"], pa.string()), (["-0", "1"], pa.string()),
    (["99999999999999999999"], pa.string()), (["true", "false"], pa.bool_()), (["TRUE"], pa.string()),
    (["1", "0"], pa.int64()), (["2026-01-31", "2024-02-29"], pa.date32()), (["2026-02-30"], pa.string()),
    (["0000-01-01"], pa.string()), (["2026-01-31 10:00:00"], pa.string()), (["NA", "null", "None"], pa.string()),
])
def test_a_column_gets_a_type_only_when_every_value_round_trips(values: list[str], kind: pa.DataType) -> None:
    block = "".join(f"{i},{v}\n" for i, v in enumerate(values)).encode()
    table, rejects = decode(block, ["id", "v"])
    assert not rejects
    assert table.schema.field("v").type == kind
    assert as_text(table)["v"] == values  # into a text column: exactly the text of the file


def test_leading_zeros_reach_a_text_column_as_written_and_an_integer_column_as_numbers() -> None:
    table, _ = decode(b"1,00501\n2,501\n", ["id", "zip"])
    assert as_text(table)["zip"] == ["00501", "501"]
    cast, failures, _ = conform(table, {"zip": Column("zip", pa.int64(), "bigint")})
    assert not failures and cast.column("zip").to_pylist() == [501, 501]


def test_empty_is_null_and_quoted_empty_is_the_empty_string() -> None:
    table, rejects = decode(b'1,,x\n2,"",y\n3,"a","b"\n', ["id", "v", "w"])
    assert not rejects
    assert table.column("v").to_pylist() == [None, "", "a"]


def test_an_invalid_utf8_row_goes_to_the_dlq_and_the_column_stays_text() -> None:
    """One such row made the whole column binary (bytea, BLOB)."""
    block = b"1,caf\xc3\xa9\n2,caf\xe9\n3,plain\n"
    table, rejects = decode(block, ["id", "v"])
    assert table.schema.field("v").type == pa.string()
    assert table.column("v").to_pylist() == ["café", "plain"]
    (reject,) = rejects
    assert reject.position == at(len(b"1,caf\xc3\xa9\n2,caf\xe9\n"))
    assert "UTF-8" in reject.reason and reject.payload == "2,caf\\xe9"


def test_latin1_is_read_as_latin1() -> None:
    block = "1,café\n2,Müller\n3,½\n".encode("latin-1")
    table, rejects = decode(block, ["id", "v"], encoding="latin-1")
    assert not rejects and table.column("v").to_pylist() == ["café", "Müller", "½"]


def test_ragged_rows_each_carry_the_position_after_their_own_line() -> None:
    """They all carried the block's end (or null)."""
    lines = [b"1,a", b"2", b"3,c,extra", b"4,d", b"", b"5", b"6,f\r", b"7,g,h,i\r", b"8,h"] * 3000
    block = b"\n".join(lines) + b"\n"
    table, rejects = decode(block, ["id", "v"])
    ends, total = {}, 0
    bad = {b"2", b"3,c,extra", b"5", b"7,g,h,i\r"}
    expected = []
    for line in lines:
        total += len(line) + 1
        if line in bad:
            expected.append(total)
        ends[total] = line
    assert [r.position["offset"] for r in rejects] == expected
    for reject in rejects:
        assert block[reject.position["offset"] - 1:reject.position["offset"]] == b"\n"
        assert ends[reject.position["offset"]].rstrip(b"\r").decode() == reject.payload
    assert table.column("v").to_pylist() == ["a", "d", "f", "h"] * 3000


def test_a_broken_quote_is_rejected_alone_and_does_not_swallow_the_next_line() -> None:
    block = b'1,"open\n2,b\n3,"a"b\n4,"x ""y"" z"\n'
    table, rejects = decode(block, ["id", "v"])
    assert table.column("v").to_pylist() == ["b", 'x "y" z']
    assert [r.position["offset"] for r in rejects] == [len(b'1,"open\n'), len(b'1,"open\n2,b\n3,"a"b\n')]


def test_a_row_over_max_record_bytes_says_so() -> None:
    block = b"1,a\n2," + b"b" * 100 + b"\n3,c\n"
    table, rejects = decode(block, ["id", "v"], max_record_bytes=50)
    assert table.column("id").to_pylist() == [1, 3]
    (reject,) = rejects
    assert reject.reason == "record of 102 bytes is over max_record_bytes (50)"
    assert reject.position == at(len(b"1,a\n2," + b"b" * 100 + b"\n"))


# Cells as a hostile or migrating user writes them.
cells = st.one_of(
    st.from_regex(r"\A[+-]?0*[0-9]{1,6}\Z"),
    st.from_regex(r"\A ?[+-]?[0-9]{1,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})? ?\Z"),
    st.sampled_from(["", "true", "false", "TRUE", "NaN", "inf", "-0", "NA", "null", "2026-01-31", "2026-13-01",
                     "9223372036854775807", "9223372036854775808"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12),
)


def csv_field(value: str, quote: bool) -> str:
    if quote or any(c in value for c in ',"') or value.startswith('"'):
        return '"' + value.replace('"', '""') + '"'
    return value


@settings(max_examples=60)
@given(st.lists(st.tuples(st.lists(st.tuples(cells, st.booleans()), min_size=2, max_size=2),
                          st.sampled_from(["ok", "ok", "ok", "invalid", "ragged"])), min_size=1, max_size=12),
       st.sampled_from(["utf-8", "latin-1"]))
def test_generated_cells_come_back_identical_and_every_row_is_somewhere(
        rows: list[tuple[list[tuple[str, bool]], str]], encoding: str) -> None:
    lines: list[bytes] = []
    expected: dict[int, list[str | None]] = {}  # id -> the values a text column must hold
    for index, (values, fate) in enumerate(rows):
        fields = [str(index)] + [csv_field(v, q) for v, q in values] + (["extra"] if fate == "ragged" else [])
        line = ",".join(fields).encode(encoding, errors="replace")
        if fate == "invalid" and encoding == "utf-8":
            line += b"\xff"  # not UTF-8 (in Latin-1 every byte is a character: such a row is like the others)
        elif fate != "ragged":
            written = [v.encode(encoding, errors="replace").decode(encoding) for v, _ in values]
            expected[index] = [None if v == "" and not q else w for (v, q), w in zip(values, written, strict=True)]
        lines.append(line)
    block = b"\n".join(lines) + b"\n"
    table, rejects = decode(block, ["id", "a", "b"], encoding=encoding)
    ends, total = [], 0
    for line in lines:
        total += len(line) + 1
        ends.append(total)
    rejected = [ends.index(int(r.position["offset"])) for r in rejects]  # each at the end of its own line
    ids = [int(i) for i in table.column("id").cast(pa.string()).to_pylist()] if table.num_rows else []
    assert sorted(ids + rejected) == list(range(len(lines)))  # each line exactly once
    assert sorted(ids) == sorted(expected)
    text = as_text(table) if table.num_rows else {"a": [], "b": []}
    for row, key in enumerate(ids):
        assert [text["a"][row], text["b"][row]] == expected[key]


@settings(max_examples=50)
@given(st.lists(st.sampled_from([b"1,a", b"2", b"", b'3,"x', b"4,d\r", b"5,\xff", b"6,f,g", b'7,"h,i"']), max_size=20),
       st.booleans())
def test_each_row_knows_the_offset_after_its_own_line(lines: list[bytes], last_newline: bool) -> None:
    """For a DLQ entry made of the row later (a quality rule, a cast): its own position."""
    from conduitd.core.decode import decode_csv_rows

    block = b"\n".join(lines) + (b"\n" if last_newline else b"")
    table, rejects, ends = decode_csv_rows(block, ["id", "v"], ",", "p", at)
    assert ends is not None and len(ends) == table.num_rows
    ids = table.column("id").cast(pa.string()).to_pylist() if table.num_rows else []
    for key, end in zip(ids, ends, strict=True):
        line = block[:end].rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        assert line.split(b",")[0] == key.encode()
    rejected = sorted(int(r.position["offset"]) for r in rejects)
    assert len(set(rejected) | {int(e) for e in ends}) == table.num_rows + len(rejects)
    assert table.num_rows + len(rejects) == sum(1 for line in lines if line)


@pytest.mark.parametrize("d", ["\t", "|", ";", " ", "^", "\\", "-", "]", "$", "."])
def test_any_delimiter_keeps_quoted_values_and_rejects_a_broken_quote(d: str) -> None:
    block = f'1{d}"a{d}b"{d}x\n2{d}"open{d}y\n3{d}c{d}z\n'.encode()
    table, rejects = decode_csv(block, ["id", "v", "w"], d, "p", at)
    assert table.column("v").to_pylist() == [f"a{d}b", "c"]
    assert [r.position for r in rejects] == [at(len(f'1{d}"a{d}b"{d}x\n2{d}"open{d}y\n'))]
