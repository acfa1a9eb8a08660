"""Vectorised encoder of a pyarrow Table into PostgreSQL's binary COPY stream.

Binary COPY lets the server skip text parsing, which matters at millions of rows per
second; a per-row Python encoder would be the bottleneck, so this module never loops over
rows on the fast paths.  The result is fed to asyncpg as::

    await conn.copy_to_table(table, source=io.BytesIO(payload), columns=[...], format="binary")

How rows are assembled: each column encoder (``copy_binary_types``) returns *parts*, each
giving every row one contiguous byte run (length prefix, data, or both).  The tuple of row
``i`` is the concatenation of part ``0..S-1`` runs of row ``i``.  Every part becomes an Arrow
binary array of one value per row (zero-copy where its runs already lie back to back, as an
Arrow string buffer does; otherwise its short runs are gathered with the classic
``np.repeat(src_start - dst_start, lengths) + arange(total)`` index), and Arrow's
``binary_join_element_wise`` concatenates them row by row in C, one copy per run.  Rows are
processed in windows so the temporaries stay bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from . import _interleave
except ImportError:  # built without a C compiler: Arrow's join assembles the rows
    _interleave = None  # type: ignore[assignment]

from .copy_binary_types import (
    ENCODERS,
    I64,
    U8,
    BadValue,
    Encoder,
    FixedPart,
    Part,
    UnsupportedType,
)

__all__ = ["COPY_HEADER", "COPY_TRAILER", "PG_BINARY_TYPES", "UnsupportedType", "encode_copy_binary"]

#: typnames (as in pg_type.typname) that ``encode_copy_binary`` can produce.
PG_BINARY_TYPES: frozenset[str] = frozenset(ENCODERS)

#: Signature, int32 flags (no OIDs), int32 header-extension length 0.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(4) + bytes(4)
#: int16 -1 field count marks the end of the tuples.
COPY_TRAILER = b"\xff\xff"

# Output bytes aimed at per window: large enough that per-window overhead is negligible,
# small enough to bound the temporaries (each part's binary array, the joined window).
_WINDOW_BYTES = 1 << 24
_MAX_WINDOW_ROWS = 1 << 20
_NO_SEPARATOR = pa.scalar(b"", pa.large_binary())


def encode_copy_binary(table: pa.Table, pg_types: Sequence[str]) -> bytes:
    """Encode every column of `table`, in order, as the PG type named in pg_types[i].

    Supported typnames are ``PG_BINARY_TYPES``; the caller has already cast each column to
    the matching Arrow type (int2->int16, int4->int32, int8->int64, float4->float32,
    float8->float64, bool->bool, text/varchar/bpchar/name/json/jsonb->string or
    large_string, uuid->string (36-char canonical form) or fixed_size_binary(16),
    bytea->binary or large_binary, date->date32, timestamp->timestamp without tz,
    timestamptz->timestamp with tz, numeric->decimal128).  Types are checked up front so a
    mismatch fails before any work: UnsupportedType for an unknown typname or a
    non-matching Arrow type, ValueError for a malformed value (e.g. a bad uuid string).

    Returns the complete stream: header, one tuple per row, trailer.
    """
    if isinstance(pg_types, str):
        raise TypeError("pg_types must be a sequence of type names, not a single str")
    if len(pg_types) != table.num_columns:
        raise ValueError(f"{table.num_columns} columns but {len(pg_types)} pg_types")
    if table.num_columns > 0x7FFF:
        raise ValueError("binary COPY supports at most 32767 columns")
    encoders = [_resolve(field, pg_type) for field, pg_type in zip(table.schema, pg_types, strict=True)]
    chunks: list[bytes | memoryview] = [COPY_HEADER]
    rows = _window_rows(table)
    for start in range(0, table.num_rows, rows):
        chunks.append(_encode_rows(table.slice(start, rows), encoders, start).data)
    chunks.append(COPY_TRAILER)
    return b"".join(chunks)


def _window_rows(table: pa.Table) -> int:
    """Rows per window so a window encodes to roughly ``_WINDOW_BYTES``.

    The Arrow size is a good proxy for the encoded size (plus 4 length bytes per field);
    it only tunes speed and memory, never the output.
    """
    if table.num_rows == 0:
        return 1
    per_row = int(table.nbytes) / table.num_rows + 4 * table.num_columns + 2
    return max(1, min(_MAX_WINDOW_ROWS, int(_WINDOW_BYTES / per_row)))


def _resolve(field: pa.Field, pg_type: str) -> Encoder:
    """Pick the encoder for one column, rejecting unknown typnames and mismatched types."""
    entry = ENCODERS.get(pg_type)
    if entry is None:
        supported = ", ".join(sorted(PG_BINARY_TYPES))
        raise UnsupportedType(
            f"column {field.name!r}: PG type {pg_type!r} is not supported (supported: {supported})"
        )
    accepts, encoder = entry
    if not accepts(field.type):
        raise UnsupportedType(
            f"column {field.name!r}: Arrow type {field.type} cannot be encoded as {pg_type}"
        )
    return encoder


def _single_array(column: Any) -> Any:
    """One contiguous Array for a (possibly chunked) column; zero-copy when single-chunk."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _encode_rows(window: pa.Table, encoders: list[Encoder], first_row: int) -> U8:
    """Tuples for one window of rows, as a flat uint8 array."""
    n = window.num_rows
    count = np.array([window.num_columns], dtype=">i2").view(np.uint8).reshape(1, 2)
    parts: list[Part] = [FixedPart((count,), None)]
    for name, column, encoder in zip(window.column_names, window.columns, encoders, strict=True):
        try:
            parts.extend(encoder(_single_array(column)))
        except BadValue as exc:
            raise ValueError(f"column {name!r}, row {first_row + exc.row}: {exc.reason}") from exc
    return _assemble(_merge_fixed(parts), n)


def _merge_fixed(parts: list[Part]) -> list[Part]:
    """Merge runs of adjacent full-width FixedParts into one part with all their pieces.

    Fewer parts means fewer, longer runs per row for the gather; a table of non-null
    fixed-width columns collapses to a single part that needs no gather at all.
    """
    merged: list[Part] = []
    run: list[U8] = []

    def flush() -> None:
        if run:
            merged.append(FixedPart(tuple(run), None))
            run.clear()

    for part in parts:
        if isinstance(part, FixedPart) and part.lengths is None:
            run.extend(part.pieces)
        else:
            flush()
            merged.append(part)
    flush()
    return merged


def _assemble(parts: list[Part], n: int) -> U8:
    """Interleave the parts row by row (see the module docstring): in one compiled pass where
    the extension was built, else with Arrow's join (`_assemble_py`, the same bytes)."""
    if _interleave is None:
        return _assemble_py(parts, n)
    specs: list[tuple[Any, ...]] = []
    for part in parts:
        if isinstance(part, FixedPart):
            pieces = tuple((np.ascontiguousarray(piece), piece.shape[1], 0 if piece.shape[0] == 1 else piece.shape[1])
                           for piece in part.pieces)
            lengths = None if part.lengths is None else np.ascontiguousarray(part.lengths, dtype=np.int64)
            specs.append((0, pieces, lengths))
        else:
            specs.append((1, np.ascontiguousarray(part.data), np.ascontiguousarray(part.starts, dtype=np.int64),
                          np.ascontiguousarray(part.lengths, dtype=np.int64)))
    return np.frombuffer(_interleave.interleave(n, specs), dtype=np.uint8)


def _assemble_py(parts: list[Part], n: int) -> U8:
    """`_assemble` in numpy and Arrow: each part an Arrow binary array, joined row by row."""
    if len(parts) == 1 and isinstance(parts[0], FixedPart) and parts[0].lengths is None:
        return parts[0].materialize(n).reshape(-1)
    joined = pc.binary_join_element_wise(*[_as_binary(part, n) for part in parts], _NO_SEPARATOR)
    _, offsets, data = joined.buffers()
    end = int(np.frombuffer(offsets, dtype=np.int64, count=n + 1)[n])
    return np.frombuffer(data, dtype=np.uint8, count=end) if end else np.zeros(0, np.uint8)


def _as_binary(part: Part, n: int) -> pa.Array:
    """The part as a large_binary array holding row ``i``'s run as value ``i``."""
    if isinstance(part, FixedPart):
        width, matrix = part.width, part.materialize(n).reshape(-1)
        if part.lengths is None:
            return _binary(matrix, _arange(n + 1) * width, n)
        data, lengths = _gather(matrix, _arange(n) * width, part.lengths), part.lengths
    else:
        data, lengths = part.data, part.lengths
        starts = part.starts
        if n and np.array_equal(starts[1:], starts[:-1] + lengths[:-1]):
            data = data[int(starts[0]):]  # back to back already: used in place
        else:
            data = _gather(data, starts, lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _binary(data, offsets, n)


def _binary(data: U8, offsets: I64, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _gather(src: U8, run_src: I64, run_len: I64) -> U8:
    """Concatenate ``src[run_src[k]:run_src[k] + run_len[k]]`` for all k, vectorised."""
    run_end = np.cumsum(run_len)
    total = int(run_end[-1]) if len(run_end) else 0
    # intp indices: np.take converts any other index dtype to intp first, costing a pass.
    index = np.repeat(run_src - (run_end - run_len), run_len)
    index += _arange(total)
    return np.take(src, index)


_ARANGE_CACHE_LIMIT = 1 << 22  # elements; 32 MiB at most
_arange_cache: I64 = np.arange(0, dtype=np.int64)


def _arange(size: int) -> I64:
    """``np.arange(size)``, sliced from a lazily grown, bounded, read-only cache.

    Building an 8-byte-per-element arange for every window (fresh pages each time) was a
    measurable share of the encode time.  Replacing the cache is a single assignment and
    the array is never written, so concurrent encodes in threads are safe.
    """
    global _arange_cache
    cache = _arange_cache
    if size <= len(cache):
        return cache[:size]
    if size > _ARANGE_CACHE_LIMIT:
        return np.arange(size, dtype=np.int64)
    grown = np.arange(min(_ARANGE_CACHE_LIMIT, max(size, 2 * len(cache), 1 << 16)), dtype=np.int64)
    grown.flags.writeable = False
    _arange_cache = grown
    return grown[:size]
