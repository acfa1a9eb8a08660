"""One writer and one reader per format, over Arrow tables (pure but for the stream given).

    csv      pyarrow's CSV writer: a header line, then one line per row; null is an empty field
    json     one JSON array of objects per file (`indent` spaces, or one line)
    jsonl    one JSON object per line
    parquet  pyarrow's Parquet writer (`compression`)

JSON has no timestamp, decimal or binary type: timestamps are ISO-8601 text (UTC with `Z`),
decimals exact text, binary base64. The readers take the column types from the state file, so
a part reads back as the Arrow table that was written.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from conduitd.core.schema import Column
from conduitd.destinations.files.settings import Format

_BATCH_ROWS = 10_000
"""Rows turned into Python objects at a time by the JSON writers (bounds their memory)."""


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _text(value: Any) -> Any:
    """A value as the stdlib json module takes it (for an indent orjson does not have)."""
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    return _default(value)


def _objects(table: pa.Table) -> Iterator[list[dict[str, Any]]]:
    for batch in table.to_batches(_BATCH_ROWS):
        yield batch.to_pylist()


_OPTIONS = orjson.OPT_UTC_Z


def write(stream: Any, table: pa.Table, fmt: Format, *, indent: int | None = None,
          compression: str = "snappy") -> None:
    """Write `table` to `stream` as one file of format `fmt`."""
    if fmt == "csv":
        pacsv.write_csv(table, stream)
    elif fmt == "parquet":
        pq.write_table(table, stream, compression=None if compression == "none" else compression)
    elif fmt == "jsonl":
        for rows in _objects(table):
            stream.write(b"".join(orjson.dumps(r, default=_default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
                                  for r in rows))
    else:
        _write_array(stream, table, indent)


def _write_array(stream: Any, table: pa.Table, indent: int | None) -> None:
    rows = [r for chunk in _objects(table) for r in chunk]
    if indent is None:
        stream.write(orjson.dumps(rows, default=_default, option=_OPTIONS) + b"\n")
    elif indent == 2:
        stream.write(orjson.dumps(rows, default=_default, option=_OPTIONS | orjson.OPT_INDENT_2) + b"\n")
    else:
        stream.write(json.dumps(rows, default=_text, indent=indent, ensure_ascii=False).encode() + b"\n")


def read(stream: Any, fmt: Format, columns: Mapping[str, Column]) -> pa.Table:
    """A file of format `fmt` as the Arrow table it was written from; `columns`: the table's
    columns (a part written before a column was added lacks it)."""
    if fmt == "parquet":
        return pq.read_table(stream)
    data = stream.read()
    if fmt == "csv":
        types = {n: _csv_type(c) for n, c in columns.items()}
        options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False)
        read_back = pacsv.read_csv(pa.BufferReader(data), convert_options=options)
        return pa.table({n: _cast(read_back.column(n), columns[n]) if n in columns else read_back.column(n)
                         for n in read_back.column_names})
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    else:
        rows = orjson.loads(data) if data.strip() else []
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({n: _json_values([r.get(n) for r in rows], columns.get(n)) for n in names})


def _csv_type(column: Column) -> pa.DataType:
    if pa.types.is_binary(column.arrow) or pa.types.is_decimal(column.arrow):
        return pa.string()
    return column.arrow


def _cast(values: pa.ChunkedArray, column: Column) -> pa.ChunkedArray:
    return values if values.type == column.arrow else values.cast(column.arrow)


def _json_values(values: list[Any], column: Column | None) -> pa.Array:
    if column is None:
        return pa.array(values)
    kind = column.arrow
    if pa.types.is_binary(kind):
        return pa.array([None if v is None else base64.b64decode(v) for v in values], kind)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_decimal(kind):
        return pa.array(values, pa.string()).cast(kind)
    return pa.array(values, kind)
