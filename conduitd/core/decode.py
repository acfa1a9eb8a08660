"""Bytes to Arrow, in bulk, with every malformed record turned into a `Reject` (never a crash).

JSON lines take a fast path through pyarrow's reader; only a block that fails there is taken
apart line by line (orjson) to find the culprits, so the usual cost is columnar. Before any
parser sees a block, lines over `max_record_bytes`, nested deeper than `nesting.MAX_DEPTH` or
not valid in the configured encoding are set aside with that reason; no value is altered on the
way (strings that look like dates stay strings). CSV is in `csvdecode`.
"""

from __future__ import annotations

import io
import re
from typing import NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from conduitd.core.arrowutil import concat_tables
from conduitd.core.bytescan import lf_offsets
from conduitd.core.csvdecode import decode_csv, decode_csv_rows
from conduitd.core.jsonnumbers import exact_numbers
from conduitd.core.lines import (
    PAYLOAD_LIMIT,
    PositionAt,
    lf_lines,
    line_bounds,
    oversize_reason,
    payload_text,
    record_sizes,
)
from conduitd.core.nesting import MAX_DEPTH, too_deep
from conduitd.core.records import Position, Reject
from conduitd.core.transcode import codec_name, to_utf8

__all__ = ["PositionAt", "decode_csv", "decode_csv_rows", "decode_jsonl", "decode_jsonl_lines", "unrepresentable"]


def decode_jsonl(block: bytes, partition: str, position_at: PositionAt) -> tuple[pa.Table, list[Reject]]:
    """Decode newline-delimited JSON objects; blank lines are skipped."""
    table, rejects, _ = decode_jsonl_lines(block, partition, position_at)
    return table, rejects


def decode_jsonl_lines(block: bytes, partition: str, position_at: PositionAt,
                       lines: int | None = None, *, max_record_bytes: int | None = None,
                       encoding: str = "utf-8", newlines: np.ndarray | None = None,
                       ) -> tuple[pa.Table, list[Reject], np.ndarray | None]:
    """Like `decode_jsonl`, also returning which lines (0-based, counting every line) became rows,
    or None when every line did: callers with per-line metadata keep it aligned with this.
    `lines`: the number of lines in `block`, where the caller knows it already.
    `max_record_bytes`: a longer line is rejected with its size (None: no limit).
    `encoding`: the text encoding of `block` (read as UTF-8 after transcoding).
    `newlines`: the offset of every LF in `block`, where the caller knows them (a pass saved).

    Before any parser sees the block, lines over `max_record_bytes` and lines nested deeper than
    `nesting.MAX_DEPTH` are set aside as rejects (a parser would crash or fail on them)."""
    screened = _oversized(block, max_record_bytes, newlines)
    early: list[Reject] = []
    utf8 = codec_name(encoding) == "utf-8"
    if not utf8:
        block, position_at, early = _transcoded(block, encoding, partition, position_at, screened)
    screened.update(_too_deep(block, screened))
    counted = None if screened else _object_lines(block, newlines if utf8 else None)
    if counted is not None:
        fast = _read_json(block).table
        if fast is not None and _strict(fast, counted if lines is None else lines):
            return fast, [], None
    if utf8:  # the fast path checked UTF-8 in bulk; here each line that is not gets its reason
        block, position_at, early = _transcoded(block, encoding, partition, position_at, screened)
    table, rejects, kept = _decode_jsonl_slowly(block, partition, position_at, screened)
    return table, _in_order(early + rejects), kept


def _transcoded(block: bytes, encoding: str, partition: str, position_at: PositionAt,
                screened: dict[int, str]) -> tuple[bytes, PositionAt, list[Reject]]:
    """The block as UTF-8, positions in it mapped to the input's, and rejects of the lines not
    valid in `encoding` (added to `screened` so they are not looked at again)."""
    transcoded = to_utf8(block, encoding)
    if transcoded.ends is None:
        return transcoded.block, position_at, []
    original = transcoded.original

    def mapped(offset: int) -> Position:
        return position_at(original(offset))

    rejects = [Reject(partition, position_at(bad.end), bad.reason, bad.payload) for bad in transcoded.invalid
               if bad.index not in screened]
    screened.update({bad.index: "" for bad in transcoded.invalid if bad.index not in screened})
    return transcoded.block, mapped, rejects


def _in_order(rejects: list[Reject]) -> list[Reject]:
    """Rejects in the order of their records (positions of one partition compare as offsets)."""
    if not rejects or not all(isinstance(r.position, dict) and "offset" in r.position for r in rejects):
        return rejects
    return sorted(rejects, key=lambda r: int(r.position["offset"]))


def _oversized(block: bytes, limit: int | None, newlines: np.ndarray | None) -> dict[int, str]:
    """Line index -> reason, for lines longer than `limit` (a cheap test first)."""
    if limit is None or len(block) <= limit:
        return {}
    sizes = record_sizes(block, newlines)
    return {int(i): oversize_reason(int(sizes[i]), limit) for i in np.flatnonzero(sizes > limit)}


def _too_deep(block: bytes, screened: dict[int, str]) -> dict[int, str]:
    starts = too_deep(block)
    if not len(starts):
        return {}
    line_starts, _ = line_bounds(block)
    indexes = np.unique(np.searchsorted(line_starts, starts, side="right") - 1)
    return {int(i): f"nested deeper than {MAX_DEPTH} levels" for i in indexes if int(i) not in screened}


def _object_lines(block: bytes, newlines: np.ndarray | None = None) -> int | None:
    """How many lines the block has when every line starts with `{` (else None): only then may
    pyarrow's reader see the block whole. It is laxer than JSON lines of objects (a `null` line
    is an empty row), and pyarrow 26 crashes the process on a block whose first line is `null`
    followed by another line; other blocks (blank lines, leading blanks, non-objects, no line
    at all) go line by line, where only objects reach it."""
    data = np.frombuffer(block, dtype=np.uint8)
    if not len(data) or data[0] != 123:
        return None
    if newlines is None:
        newlines = lf_offsets(block)
    starts = newlines[:-1] + 1 if len(newlines) and newlines[-1] == len(data) - 1 else newlines + 1
    return len(starts) + 1 if (data[starts] == 123).all() else None


def _strict(table: pa.Table, lines: int) -> bool:
    """pyarrow's reader is laxer than JSON lines of objects: it reads a `null` line as an empty
    row, two objects on one line as two rows, and NaN. Those blocks go line by line instead.
    (Blank lines and `{}` lines take that path too; it reads them right.)"""
    if table.num_rows != lines:
        return False
    if table.num_columns and all(column.null_count for column in table.columns):
        all_null = None
        for column in table.columns:
            nulls = column.is_null()
            all_null = nulls if all_null is None else pc.and_(all_null, nulls)
        if pc.any(all_null).as_py():
            return False
    for column in table.columns:
        if pa.types.is_floating(column.type) and pc.any(pc.invert(pc.is_finite(column))).as_py():
            return False
    return table.num_columns > 0 or lines == 0


class _Read(NamedTuple):
    """A block read by pyarrow: the table, or why not (a DLQ reason), or the lines it refused."""

    table: pa.Table | None
    reason: str = ""
    refused: dict[int, str] = {}  # noqa: RUF012 - a NamedTuple default, never changed
    """Line (0-based in the block) -> reason: records that cannot be read as they are written."""


def _read_json(block: bytes) -> _Read:
    """The block read by pyarrow, every value as written (strings that look like timestamps,
    numbers a double does not hold: `jsonnumbers`)."""
    if not block or block.isspace():  # (strip() would copy the block)
        return _Read(pa.table({}))
    table = _read_hinted(block)
    try:
        if table is None:
            table = pajson.read_json(io.BytesIO(block), read_options=_read_options(block))
        table.validate(full=True)  # rejects invalid UTF-8, which the reader lets through
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        return _Read(None, unrepresentable(str(exc)))
    table = _strings_as_written(table, block, _timestamps_as_written(table, block))
    exact = exact_numbers(table, block)
    if exact is None:  # not one row per line: read line by line
        return _Read(None, "record cannot be represented in Arrow: its numbers cannot be read again as written")
    if exact.refused:
        return _Read(None, refused=exact.refused)
    return _Read(_timestamps_as_utc(exact.table))


def _read_hinted(block: bytes) -> pa.Table | None:
    """The block read once where it would otherwise be read twice, or None (read it as usual).

    When the first line holds a date-like string that a timestamp would not print back as
    written ("2026-01-01T10:00:00.120Z"), the block surely takes `_strings_as_written`'s second
    read, which makes every timestamp the reader found a string again. So the first line's
    top-level fields holding date-like strings are read as strings at once (an explicit schema;
    every other field is inferred as before). The result is the same table: the same types (a
    field holding anything but strings fails the read, as it fails inference: then the block is
    read as usual), the columns moved back to where inference puts them (first appearance)."""
    end = block.find(b"\n")
    first = block[:end] if end >= 0 else block
    if not _ALTERED_BY_PARSING.search(first):
        return None
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    dates = [name for name, value in record.items() if isinstance(value, str) and _DATE_LIKE.match(value)]
    if not dates:
        return None
    explicit = pa.schema([(name, pa.string()) for name in dates])
    try:
        table = pajson.read_json(io.BytesIO(block), read_options=_read_options(block),
                                 parse_options=pajson.ParseOptions(explicit_schema=explicit,
                                                                   unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    names = table.column_names
    if len(set(names)) != len(names):
        return None
    first_keys = list(record)
    order = first_keys + [name for name in names if name not in record]
    if sorted(order) != sorted(names):
        return None
    return table.select(order)


_DATE_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _read_options(block: bytes) -> pajson.ReadOptions:
    """The whole block as one pyarrow block. With smaller blocks a record may straddle two, and
    pyarrow 26 then reads a straddling record whose type differs from the rows before it wrongly
    (a string became `{"k": null}`) or crashes the process; a record longer than a block was
    refused ("cannot be represented in Arrow"). One block costs the parallel parse of a block's
    parts, about 10% here."""
    return pajson.ReadOptions(block_size=max(len(block) + 1, 1 << 16))


_MIXED = re.compile(r"Column\((.*)\) changed from (\w+) to (\w+)")


def unrepresentable(complaint: str) -> str:
    """The reason for a valid JSON record pyarrow cannot read, in the user's words."""
    mixed = _MIXED.search(complaint)
    if mixed:
        path, first, second = mixed.groups()
        return (f"record cannot be represented in Arrow: field {path or '/'} mixes {first} and {second} values "
                "(an array's items, or a field, must have one type)")
    detail = re.sub(r"^JSON parse error: |\.? in row \d+$", "", complaint.strip().splitlines()[0] if complaint else "")
    return f"record cannot be represented in Arrow: {detail or 'unknown reason'}"


def _strings_as_written(table: pa.Table, block: bytes, strings: dict[str, pa.DataType]) -> pa.Table:
    """The block's fields in `strings` read again with these types (see `_timestamps_as_written`)."""
    if not strings:
        return table
    try:
        exact = pajson.read_json(io.BytesIO(block), read_options=_read_options(block),
                                 parse_options=pajson.ParseOptions(explicit_schema=pa.schema(list(strings.items())),
                                                                   unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return table
    for name in strings:
        table = table.set_column(table.schema.get_field_index(name), name, exact.column(name))
    return table


def _timestamps_as_written(table: pa.Table, block: bytes) -> dict[str, pa.DataType]:
    """The reader turns strings such as "2026-01-01" or "2026-01-01 10:00:00" into timestamps,
    which a text or jsonb column then received as "2026-01-01T00:00:00Z": the text changed. So
    they are read again as the strings they are (returned: the fields' types with every
    timestamp a string); a new column of ISO-8601 timestamps with a zone still becomes
    `timestamptz` (schema.refine_types), and a timestamp column parses them (zone-less as UTC)."""
    strings = {f.name: _strings_for_timestamps(f.type) for f in table.schema if "timestamp" in str(f.type)}
    if all(pa.types.is_timestamp(table.schema.field(name).type) for name in strings) \
            and not _ALTERED_BY_PARSING.search(block):
        return {}  # every date-like string is 2026-01-31T10:00:00Z: as a UTC timestamp it prints the same
    return strings


_ALTERED_BY_PARSING = re.compile(rb'"[0-9]{4}-[0-9]{2}-[0-9]{2}(?!T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")')
"""A date-like string the reader may make a timestamp that does not print back as written (one
search, so that the usual "...T10:00:00Z" costs no second read)."""


def _timestamps_as_utc(table: pa.Table) -> pa.Table:
    """Timestamps left (only "...T10:00:00Z" strings) are UTC instants: say so in the type."""
    for index, fld in enumerate(table.schema):
        if pa.types.is_timestamp(fld.type) and fld.type.tz is None:
            table = table.set_column(index, fld.name, table.column(index).cast(pa.timestamp(fld.type.unit, tz="UTC")))
    return table


def _strings_for_timestamps(kind: pa.DataType) -> pa.DataType:
    """`kind` with every timestamp in it a string (at most `MAX_DEPTH` levels: recursion is fine)."""
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_strings_for_timestamps(kind.field(i).type))
                          for i in range(kind.num_fields)])
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_strings_for_timestamps(kind.value_type)))
    return kind


def _decode_jsonl_slowly(block: bytes, partition: str, position_at: PositionAt,
                         screened: dict[int, str]) -> tuple[pa.Table, list[Reject], np.ndarray]:
    """Line by line (split at LF only, as the callers count lines); `screened`: lines already
    judged (a reason, or "" for one rejected by the caller)."""
    rejects: list[Reject] = []
    good: list[_Line] = []
    offset = 0
    for index, line in enumerate(lf_lines(block)):
        offset += len(line)
        text = line.strip()
        if index in screened:
            if screened[index]:  # oversized or too deep: the DLQ keeps the start (the file has it all)
                rejects.append(Reject(partition, position_at(offset), screened[index],
                                      payload_text(text[:PAYLOAD_LIMIT])))
            continue
        if not text:
            continue
        reason = _json_object_problem(text)
        if reason is None:
            good.append(_Line(text, offset, index))
        else:
            rejects.append(Reject(partition, position_at(offset), reason, payload_text(text)))
    kept: list[int] = []
    tables = _read_lines(good, partition, position_at, rejects, kept)
    return concat_tables(tables), _in_order(rejects), np.array(kept, dtype=np.int64)


class _Line(NamedTuple):
    text: bytes
    end: int
    number: int


def _json_object_problem(line: bytes) -> str | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"JSON value is a {type(value).__name__}, not an object"
    return None


def _read_lines(lines: list[_Line], partition: str, position_at: PositionAt,
                rejects: list[Reject], kept: list[int]) -> list[pa.Table]:
    """Read valid JSON objects; where types clash inside a block, halve it until they do not."""
    if not lines:
        return []
    read = _read_json(b"\n".join(line.text for line in lines) + b"\n")
    if read.refused:  # records whose values cannot be read as written: the others are read again
        for index, reason in sorted(read.refused.items()):
            line = lines[index]
            rejects.append(Reject(partition, position_at(line.end), reason, payload_text(line.text)))
        rest = [line for index, line in enumerate(lines) if index not in read.refused]
        return _read_lines(rest, partition, position_at, rejects, kept)
    if read.table is not None:
        kept.extend(line.number for line in lines)
        return [read.table]
    if len(lines) == 1:
        (line,) = lines
        rejects.append(Reject(partition, position_at(line.end), read.reason, payload_text(line.text)))
        return []
    middle = len(lines) // 2
    return (_read_lines(lines[:middle], partition, position_at, rejects, kept)
            + _read_lines(lines[middle:], partition, position_at, rejects, kept))
