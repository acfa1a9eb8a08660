"""The text COPY writes (CSV) into Arrow with the catalog's types, exactly; a value the type
cannot hold (a numeric NaN, an infinite timestamp) makes its row a reject with the reason, never a
failed poll or a silently changed value."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from conduitd.core.records import Position, Reject
from conduitd.core.schema import with_logical
from conduitd.sources.tables.poller import Read

PositionAt = Callable[[list[str]], Position]
"""The position after a row, from its cursor and key texts (for a reject's DLQ entry)."""


_MIN_BLOCK = 1 << 16
_MAX_BLOCK = 1 << 30


def _block_size(nbytes: int) -> int:
    """One CSV block for the whole read (its columns come out in one chunk each), no larger than
    the data. A fixed 64 MiB block was allocated on every read: parsing the one last record took
    0.4-16 ms instead of ~0.1 ms, and a 50,000-row chunk's decode 10-25% more CPU."""
    return max(_MIN_BLOCK, min(_MAX_BLOCK, nbytes + 1))


def _options(names: Sequence[str], types: dict[str, pa.DataType],
             nbytes: int) -> tuple[pcsv.ReadOptions, pcsv.ParseOptions, pcsv.ConvertOptions]:
    return (pcsv.ReadOptions(column_names=list(names), use_threads=False, block_size=_block_size(nbytes)),
            pcsv.ParseOptions(newlines_in_values=True),
            pcsv.ConvertOptions(column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
                                null_values=[""], true_values=["t"], false_values=["f"]))


def _read(data: bytes, names: Sequence[str], types: dict[str, pa.DataType]) -> pa.Table:
    read, parse, convert = _options(names, types, len(data))
    return pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)


def last_record(data: bytes) -> bytes:
    """The last record of COPY's CSV `data` (every record ends with a newline). A newline inside a
    quoted value has an odd number of quotes after it up to the end of its record (its value's
    closing quote; quotes within values come doubled), a record's own newline an even number."""
    end = len(data) - 1
    start = data.rfind(b"\n", 0, end)
    while start >= 0 and data.count(b'"', start, end) % 2:
        start = data.rfind(b"\n", 0, start)
    return data[start + 1:]


def last_texts(data: bytes, names: Sequence[str], positions: Sequence[str]) -> list[str] | None:
    """The texts of the columns `positions` in the last row of COPY's CSV `data` (None when it has
    none): the row's position, found without decoding the rest."""
    if not data:
        return None
    row = _read(last_record(data), names, dict.fromkeys(names, pa.string()))
    return [row.column(p)[0].as_py() for p in positions]


def decode_copy(data: bytes, columns: dict[str, pa.DataType], hidden: Sequence[str], positions: Sequence[str],
                partition: str, position_at: PositionAt, logical: Mapping[str, str] | None = None) -> Read:
    """The rows of COPY's CSV `data`: `columns` with their types (binary arrives as hex text), then
    the `hidden` text columns; `positions` names the columns whose texts are a row's position.
    `logical` marks text columns holding uuids or JSON (`schema.with_logical`)."""
    read = _decode_copy(data, columns, hidden, positions, partition, position_at)
    if logical:
        read = Read(with_logical(read.rows, logical), read.rejects, read.last, read.count, read.nbytes)
    return read


def _decode_copy(data: bytes, columns: dict[str, pa.DataType], hidden: Sequence[str], positions: Sequence[str],
                 partition: str, position_at: PositionAt) -> Read:
    names = [*columns, *hidden]
    direct = {n: (pa.string() if pa.types.is_binary(t) else t) for n, t in columns.items()}
    direct.update(dict.fromkeys(hidden, pa.string()))
    if not data:
        return Read(pa.table({n: pa.array([], type=t) for n, t in columns.items()}), [], None, 0)
    try:
        table = _read(data, names, direct)
        last = last_texts(data, names, positions)
        return Read(_unhex(table.drop_columns(list(hidden)), columns), [], last, table.num_rows, len(data))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # a value the type cannot hold: find its rows
    text = _read(data, names, dict.fromkeys(names, pa.string()))
    bad: dict[int, str] = {}
    for name, kind in direct.items():
        column = text.column(name)
        try:
            _cast(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for index, value in enumerate(column.to_pylist()):
                if index in bad or value is None:
                    continue
                try:
                    _cast(pa.array([value], pa.string()), kind)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    bad[index] = f"column {name!r}: value {value[:80]!r} does not fit {kind} ({str(exc)[:120]})"
    kept = text.take(pa.array([i for i in range(text.num_rows) if i not in bad], pa.int64()))
    table = pa.table({n: _cast(kept.column(n), direct[n]) for n in columns})
    position_rows = [text.column(p).to_pylist() for p in positions]
    rejects = [Reject(partition, position_at([str(col[i]) for col in position_rows]), reason,
                      _payload(text.drop_columns(list(hidden)), i), rule="decode")
               for i, reason in sorted(bad.items())]
    last = [str(col[-1]) for col in position_rows]
    return Read(_unhex(table, columns), rejects, last, text.num_rows, len(data))


def _cast(text: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """Text as COPY writes it cast to `kind` (booleans are `t` and `f`)."""
    if pa.types.is_boolean(kind):
        valid = pc.is_in(text, pa.array(["t", "f"]))
        if not pc.all(pc.or_kleene(valid, pc.is_null(text))).as_py():
            raise pa.ArrowInvalid("a boolean is t or f")
        return pc.equal(text, "t")
    return pc.cast(text, kind)


def _unhex(table: pa.Table, wanted: dict[str, pa.DataType]) -> pa.Table:
    for name, kind in wanted.items():
        if pa.types.is_binary(kind):
            values = [None if v is None else bytes.fromhex(v) for v in table.column(name).to_pylist()]
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.binary()))
    return table


def _payload(text: pa.Table, index: int) -> str:
    import orjson

    return orjson.dumps(text.slice(index, 1).to_pylist()[0]).decode()
