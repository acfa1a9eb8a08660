"""The text-protocol row packets cut into Arrow columns (`mysql_wire`): every length encoding,
NULL against the empty value, bytes kept exactly, and where a read of packets stops."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.mysql_catalog import decode_columns
from conduitd.sources.tables.mysql_wire import WireRows, _rows_only, _scan

ZERO = np.zeros(1, np.int64)


def packet(values: list[bytes | None], seq: int) -> bytes:
    rows = WireRows(len(values))
    rows.add_values(tuple(values))
    payload = rows.pieces[0][4:]
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def test_each_length_encoding_null_and_empty_come_out_as_sent() -> None:
    sizes = [0, 1, 250, 251, 65535, 65536, 70000]
    values = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    rows = WireRows(3)
    for i, value in enumerate(values):
        rows.add(packet([str(i).encode(), value, None if i % 2 else b"\t\n\\\x00\xff"], 1 + i), ZERO)
    ids, blobs, tails = rows.columns()
    assert ids.to_pylist() == [str(i).encode() for i in range(len(sizes))]
    assert blobs.to_pylist() == values
    assert tails.to_pylist() == [None if i % 2 else b"\t\n\\\x00\xff" for i in range(len(sizes))]
    assert tails.null_count == 3 and blobs.null_count == 0  # b"" is a value, not NULL
    assert rows.row(3) == (b"3", values[3], None)
    assert rows.row(0) == (b"0", b"", b"\t\n\\\x00\xff")


def test_an_eight_byte_length_and_a_packet_of_other_width_are_refused_or_read() -> None:
    payload = b"\x011" + b"\xfe" + (3).to_bytes(8, "little") + b"abc"
    rows = WireRows(2)
    rows.add(len(payload).to_bytes(3, "little") + b"\x01" + payload, ZERO)
    assert [c.to_pylist() for c in rows.columns()] == [[b"1"], [b"abc"]]
    assert rows.row(0) == (b"1", b"abc")
    wider = WireRows(1)
    wider.add(packet([b"1", b"2"], 1), ZERO)
    with pytest.raises(pa.ArrowInvalid):
        wider.columns()


def test_a_read_takes_whole_row_packets_in_sequence_and_leaves_the_end_to_asyncmy() -> None:
    eof = b"\x05\x00\x00\x04\xfe\x00\x00\x02\x00"
    buf = bytearray(packet([b"a"], 1) + packet([None], 2) + packet([b"c"], 3) + eof + b"\x10\x00")
    starts, stop = _scan(buf, 0, len(buf))
    assert len(starts) == 4 and stop == len(buf) - 2  # a header not whole is left for later
    assert _rows_only(buf, starts, 1) == 3  # the EOF packet is not a row
    assert _rows_only(buf, starts, 2) == 0  # out of sequence: asyncmy raises it
    error = bytearray(b"\x03\x00\x00\x01\xff\x15\x04")
    assert _rows_only(error, _scan(error, 0, len(error))[0], 1) == 0


def test_text_that_is_not_utf8_is_a_reject_and_binary_stays_bytes() -> None:
    columns = [SourceColumn("id", "int(11)", "int"), SourceColumn("note", "text", "text"),
               SourceColumn("raw", "varbinary(4)", "varbinary")]
    rows = WireRows(3)
    first = packet([b"1", "snow ☃".encode(), b"\xff\x00"], 1)
    rows.add(first + packet([b"2", b"\xff\xfe", b"\x80"], 2), np.array([0, len(first)]))
    table, rejects = decode_columns(rows.columns(), columns, "t", lambda i: {"row": i})
    assert table.to_pylist() == [{"id": 1, "note": "snow ☃", "raw": b"\xff\x00"}]
    assert table.schema.field("note").type == pa.string() and table.schema.field("raw").type == pa.binary()
    assert len(rejects) == 1 and rejects[0].column == "note" and rejects[0].position == {"row": 1}
