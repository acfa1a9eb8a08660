"""Bytes to Arrow, in bulk, with every malformed record turned into a `Reject` (never a crash).

JSON lines take a fast path through pyarrow's multi-threaded reader; only a block that fails
there is taken apart line by line (orjson) to find the culprits, so the usual cost is columnar.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from conduitd.arrowutil import concat_tables
from conduitd.records import Position, Reject

PositionAt = Callable[[int], Position]
"""Maps the byte offset just after a record (relative to the block) to its position."""


def decode_jsonl(block: bytes, partition: str, position_at: PositionAt) -> tuple[pa.Table, list[Reject]]:
    """Decode newline-delimited JSON objects; blank lines are skipped."""
    table, rejects, _ = decode_jsonl_lines(block, partition, position_at)
    return table, rejects


def decode_jsonl_lines(block: bytes, partition: str, position_at: PositionAt,
                       lines: int | None = None, *, max_record_bytes: int | None = None,
                       encoding: str = "utf-8") -> tuple[pa.Table, list[Reject], np.ndarray | None]:
    """Like `decode_jsonl`, also returning which lines (0-based, counting every line) became rows,
    or None when every line did: callers with per-line metadata keep it aligned with this.
    `lines`: the number of lines in `block`, where the caller knows it already.
    `max_record_bytes`: a longer line is rejected with its size (None: no limit).
    `encoding`: the text encoding of `block` (read as UTF-8 after transcoding)."""
    fast = _read_json(block)
    if fast is not None and _strict(fast, block, lines):
        return fast, [], None
    return _decode_jsonl_slowly(block, partition, position_at)


def _strict(table: pa.Table, block: bytes, lines: int | None) -> bool:
    """pyarrow's reader is laxer than JSON lines of objects: it reads a `null` line as an empty
    row, two objects on one line as two rows, and NaN. Those blocks go line by line instead.
    (Blank lines and `{}` lines take that path too; it reads them right.)"""
    if lines is None:
        lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
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


def _read_json(block: bytes) -> pa.Table | None:
    if not block.strip():
        return pa.table({})
    try:
        table = pajson.read_json(
            io.BytesIO(block), read_options=pajson.ReadOptions(block_size=1 << 20)  # 1 MiB: parsed in parallel
        )
        table.validate(full=True)  # rejects invalid UTF-8, which the reader lets through
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return _timestamps_as_utc(_exact_big_numbers(table, block))


_EXACT_IN_DOUBLE = float(2**53)


def _exact_big_numbers(table: pa.Table, block: bytes) -> pa.Table:
    """The reader makes a field holding integers and fractions a double, which cannot hold an
    integer above 2**53 exactly (9007199254740993 would become ...992). Such a block is read again
    with those fields as decimals, at the smallest scale that holds every value."""
    suspects = [f.name for f in table.schema if pa.types.is_floating(f.type) and len(table.column(f.name))
                and (pc.max(pc.abs(table.column(f.name))).as_py() or 0) >= _EXACT_IN_DOUBLE]
    if not suspects:
        return table
    wide = pa.decimal128(38, 18)
    try:
        exact = pajson.read_json(io.BytesIO(block), read_options=pajson.ReadOptions(block_size=1 << 20),
                                 parse_options=pajson.ParseOptions(
                                     explicit_schema=pa.schema([(n, wide) for n in suspects]),
                                     unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return table  # beyond 20 integer digits: only a double holds them at all
    for name in suspects:
        column = exact.column(name)
        for scale in range(19):
            try:
                column = column.cast(pa.decimal128(38, scale), safe=True)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def _timestamps_as_utc(table: pa.Table) -> pa.Table:
    """The reader turns "2026-01-01T00:00:00Z" into a zone-less timestamp holding the UTC instant;
    say so in the type. (A JSON timestamp without a zone is taken as UTC too: documented.)"""
    for index, fld in enumerate(table.schema):
        if pa.types.is_timestamp(fld.type) and fld.type.tz is None:
            table = table.set_column(index, fld.name, table.column(index).cast(pa.timestamp(fld.type.unit, tz="UTC")))
    return table


def _decode_jsonl_slowly(
    block: bytes, partition: str, position_at: PositionAt
) -> tuple[pa.Table, list[Reject], np.ndarray]:
    rejects: list[Reject] = []
    good: list[_Line] = []
    offset = 0
    for index, line in enumerate(block.splitlines(keepends=True)):
        offset += len(line)
        text = line.strip()
        if not text:
            continue
        reason = _json_object_problem(text)
        if reason is None:
            good.append(_Line(text, offset, index))
        else:
            rejects.append(Reject(partition, position_at(offset), reason, _payload(text)))
    kept: list[int] = []
    tables = _read_lines(good, partition, position_at, rejects, kept)
    return concat_tables(tables), rejects, np.array(kept, dtype=np.int64)


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
    table = _read_json(b"\n".join(line.text for line in lines) + b"\n")
    if table is not None:
        kept.extend(line.number for line in lines)
        return [table]
    if len(lines) == 1:
        (line,) = lines
        rejects.append(Reject(partition, position_at(line.end), "record cannot be represented in Arrow",
                              _payload(line.text)))
        return []
    middle = len(lines) // 2
    return (_read_lines(lines[:middle], partition, position_at, rejects, kept)
            + _read_lines(lines[middle:], partition, position_at, rejects, kept))


def _payload(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def decode_csv(block: bytes, columns: list[str], delimiter: str, partition: str,
               position_at: PositionAt, *, max_record_bytes: int | None = None,
               encoding: str = "utf-8") -> tuple[pa.Table, list[Reject]]:
    """Decode CSV rows (no header in `block`: `columns` come from the file's first line).
    `max_record_bytes`: a longer line is rejected with its size (None: no limit).
    `encoding`: the text encoding of `block`; a row with bytes invalid in it is rejected."""
    if not block.strip():
        return pa.table({}), []
    bad_rows: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(column_names=columns, block_size=max(len(block) + 1, 1 << 20)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid,
                                              newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        reject = Reject(partition, position_at(len(block)), f"unreadable CSV block: {exc}", _payload(block[:4096]))
        return pa.table({}), [reject]
    line_ends = np.cumsum([len(x) for x in block.splitlines(keepends=True)]) if bad_rows else np.empty(0)
    rejects = []
    for number, text in bad_rows:
        end = int(line_ends[number - 1]) if number is not None and 0 < number <= len(line_ends) else len(block)
        rejects.append(Reject(partition, position_at(end),
                              f"CSV row has the wrong number of fields (expected {len(columns)})", text))
    return table, rejects
