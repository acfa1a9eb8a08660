"""CSV rows to Arrow without altering a value, every malformed row a `Reject` of its own.

Every column is read as text; a column becomes a number, boolean, date or timestamp only when
each of its values is that type's own spelling of itself (see `csvtypes`), so `00501`, `1.50`,
`+3` or ` 7` keep their text. An existing table's column types are applied later, by the
pipeline's cast. An empty unquoted field is NULL; a quoted empty field (`""`) is the empty
string. Each line is one row (a quoted line break is not supported), which is what lets a row
that cannot be read be rejected alone, at the position just after its own line.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict, deque
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from conduitd.core.arrowutil import concat_tables
from conduitd.core.csvtypes import infer_types
from conduitd.core.lines import (
    PAYLOAD_LIMIT,
    PositionAt,
    lf_lines,
    line_bounds,
    oversize_reason,
    payload_text,
    record_sizes,
)
from conduitd.core.records import Reject
from conduitd.core.transcode import codec_name, to_utf8


def decode_csv(block: bytes, columns: list[str], delimiter: str, partition: str,
               position_at: PositionAt, *, max_record_bytes: int | None = None,
               encoding: str = "utf-8") -> tuple[pa.Table, list[Reject]]:
    """Decode CSV rows (no header in `block`: `columns` come from the file's first line).
    `max_record_bytes`: a longer line is rejected with its size (None: no limit).
    `encoding`: the text encoding of `block`; a row with bytes invalid in it is rejected."""
    table, rejects, _ = decode_csv_rows(block, columns, delimiter, partition, position_at,
                                        max_record_bytes=max_record_bytes, encoding=encoding)
    return table, rejects


def decode_csv_rows(block: bytes, columns: list[str], delimiter: str, partition: str,
                    position_at: PositionAt, *, max_record_bytes: int | None = None,
                    encoding: str = "utf-8",
                    null_values: Sequence[str] = ("",)) -> tuple[pa.Table, list[Reject], np.ndarray | None]:
    """`decode_csv`, also giving for each row the offset in `block` just after its line (for a
    DLQ entry made of the row later, by a quality rule or a cast), or None where unknown.
    `null_values`: unquoted fields equal to one of these are null (a quoted one stays text)."""
    if not block.strip():
        return pa.table({}), [], np.empty(0, dtype=np.int64)
    transcoded = to_utf8(block, encoding)
    lines = lf_lines(transcoded.block)  # one per input line: an invalid one is left empty
    input_ends = line_bounds(block)[1]
    rejects = [(bad.end, bad.reason, bad.payload) for bad in transcoded.invalid]
    if max_record_bytes is not None and len(block) > max_record_bytes:
        sizes = record_sizes(block)
        invalid = {bad.index for bad in transcoded.invalid}
        for index in map(int, (sizes > max_record_bytes).nonzero()[0]):
            if index not in invalid:
                start = int(input_ends[index - 1]) if index else 0
                rejects.append((int(input_ends[index]), oversize_reason(int(sizes[index]), max_record_bytes),
                                payload_text(block[start:start + min(int(sizes[index]), PAYLOAD_LIMIT)])))
                lines[index] = _emptied(lines[index])
    for index in _misquoted(b"".join(lines), delimiter):
        rejects.append((int(input_ends[index]), "CSV row has a malformed quoted field (a quote must open and close "
                        "a whole field, quotes inside doubled, no line break inside)",
                        payload_text(lines[index].rstrip(b"\r\n"))))
        lines[index] = _emptied(lines[index])
    text = b"".join(lines)
    table, bad_rows = _read(text, columns, delimiter, null_values)
    text_ends = np.asarray(_ends(lines), dtype=np.int64)

    def to_input(offset: int) -> int:
        """The input offset ending the line that ends at (or contains) `offset` of `text`."""
        return int(input_ends[min(int(np.searchsorted(text_ends, offset, side="left")), len(input_ends) - 1)])

    positioned, bad_ends = _positioned(bad_rows, text)
    rejects += [(to_input(end), reason, row) for end, reason, row in positioned]
    found = [Reject(partition, position_at(end), reason, payload) for end, reason, payload in sorted(rejects)]
    row_ends = _row_ends(text, bad_ends)
    if len(row_ends) != table.num_rows:
        return infer_types(table), found, None
    mapped = input_ends[np.minimum(np.searchsorted(text_ends, row_ends, side="left"), len(input_ends) - 1)]
    return infer_types(table), found, mapped.astype(np.int64)


def refuse_rows(block: bytes, reason: str, partition: str, position_at: PositionAt, *,
                encoding: str = "utf-8") -> list[Reject]:
    """Every row of `block` (one per non-blank line) as a reject with `reason`, at the position just
    after its own line: for a file whose rows cannot be read at all (a header that cannot be
    decoded names no column), so that each row is in the DLQ and none is dropped unseen."""
    name = codec_name(encoding)
    rejects = []
    end = 0
    for line in lf_lines(block):
        end += len(line)
        record = line.rstrip(b"\r\n")
        if record:
            rejects.append(Reject(partition, position_at(end), reason,
                                  record[:PAYLOAD_LIMIT].decode(name, errors="backslashreplace")))
    return rejects


def _row_ends(text: bytes, bad_ends: set[int]) -> np.ndarray:
    """Where each row's line ends in `text`: lines split as pyarrow splits them (CR, LF or
    CR LF), without the empty ones (skipped) and those of rows it could not read."""
    data = np.frombuffer(text, dtype=np.uint8)
    cr, lf = data == 13, data == 10
    after_cr = np.zeros(len(data), dtype=bool)
    after_cr[1:] = cr[:-1]
    first = np.flatnonzero((cr | lf) & ~(lf & after_cr))  # the first byte of each line break
    crlf = np.zeros(len(first), dtype=bool)
    inside = first + 1 < len(data)
    crlf[inside] = cr[first[inside]] & lf[first[inside] + 1]
    after = first + 1 + crlf
    starts = np.concatenate(([0], after)).astype(np.int64)
    content_ends = np.concatenate((first, [len(data)])).astype(np.int64)
    ends = np.concatenate((after, [len(data)])).astype(np.int64)
    rows: np.ndarray = ends[(content_ends > starts) & ~np.isin(ends, np.fromiter(bad_ends, dtype=np.int64))]
    return rows


def _emptied(line: bytes) -> bytes:
    """Only the line break is left: the reader skips the line, and lines keep their count."""
    return line[len(line.rstrip(b"\r\n")):]


def _misquoted(text: bytes, delimiter: str) -> list[int]:
    """Lines (split at LF) with a field pyarrow would read leniently, so altered: a quote left
    open (it would swallow the next line), or text after a closing quote. Checked in bulk, by
    one regular expression over every line; a block without quotes is not looked at."""
    if b'"' not in text:
        return []
    data = np.frombuffer(text, dtype=np.uint8)
    breaks = np.flatnonzero((data == 10) | (data == 13))
    starts = np.concatenate(([0], breaks + 1)).astype(np.int32)
    ends = np.concatenate((breaks, [len(text)])).astype(np.int32)
    # Segments between line breaks, as one string array over the block's bytes (no copy per line).
    bounds = np.empty(2 * len(starts), dtype=np.int32)
    bounds[0::2], bounds[1::2] = starts, ends
    pieces = pa.StringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds.tobytes()), pa.py_buffer(text))
    segments = pieces[0::2] if len(pieces) else pieces
    d = re.escape(delimiter)
    field = f'(?:"(?:[^"]|"")*"|[^"{d}][^{d}]*|)'
    good = pc.match_substring_regex(segments, f"^{field}(?:{d}{field})*$")
    bad = np.flatnonzero(~np.asarray(good.to_numpy(zero_copy_only=False), dtype=bool))
    if not len(bad):
        return []
    line_starts, _ = line_bounds(text)
    return sorted({int(i) for i in np.searchsorted(line_starts, starts[bad], side="right") - 1})


BadRow = tuple[str, str]
"""A row pyarrow could not read: its text (without the line break) and why."""


def _read(text: bytes, columns: list[str], delimiter: str,
          null_values: Sequence[str] = ("",)) -> tuple[pa.Table, list[BadRow]]:
    """Read with pyarrow; when it refuses the whole block (a malformed quote, say), halve it
    until each refusal is one line."""
    bad_rows: list[BadRow] = []
    if not text.strip(b"\r\n"):  # every line was set aside: pyarrow would call it an empty file
        return _empty(columns), bad_rows

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append((row.text, f"CSV row has the wrong number of fields (expected {row.expected_columns}, "
                                   f"found {row.actual_columns})"))
        return "skip"

    try:
        return pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(column_names=columns, block_size=max(len(text) + 1, 1 << 20)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid,
                                              newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in columns}, strings_can_be_null=True,
                null_values=list(null_values), quoted_strings_can_be_null=False),
        ), bad_rows
    except pa.ArrowInvalid as exc:
        complaint = _first_line(exc)
    lines = [line for line in text.splitlines(keepends=True) if line.strip(b"\r\n")]
    if len(lines) <= 1:
        record = lines[0].rstrip(b"\r\n").decode("utf-8") if lines else ""
        return _empty(columns), [(record, f"unreadable CSV row: {complaint}")]
    middle = len(lines) // 2
    first, first_bad = _read(b"".join(lines[:middle]), columns, delimiter, null_values)
    second, second_bad = _read(b"".join(lines[middle:]), columns, delimiter, null_values)
    return concat_tables([first, second]) if first.num_rows or second.num_rows else first, first_bad + second_bad


def _empty(columns: list[str]) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in dict.fromkeys(columns)})


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["unknown reason"])[0]


def _positioned(bad_rows: list[BadRow], text: bytes) -> tuple[list[tuple[int, str, str]], set[int]]:
    """Each bad row with the offset in `text` just after its own line, and the set of those.
    pyarrow does not say reliably which line a row was (its number is unknown when parsing in
    parallel), so rows are matched to lines by their text, split as pyarrow splits them (CR, LF
    or CR LF); equal texts are the same row repeated and take their lines in order."""
    if not bad_rows:
        return [], set()
    wanted = {row for row, _ in bad_rows}
    where: dict[str, deque[int]] = defaultdict(deque)
    end = 0
    for line in text.splitlines(keepends=True):
        end += len(line)
        record = line.rstrip(b"\r\n").decode("utf-8")
        if record in wanted:
            where[record].append(end)
    found = []
    for row, reason in bad_rows:
        end = where[row].popleft() if where[row] else len(text)  # not seen: the block's end, never lost
        found.append((end, reason, row))
    return found, {end for end, _, _ in found}


def _ends(lines: list[bytes]) -> list[int]:
    total, ends = 0, []
    for line in lines:
        total += len(line)
        ends.append(total)
    return ends
