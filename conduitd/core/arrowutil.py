"""Small Arrow helpers shared by decoding and batching."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from conduitd.core.jsontext import to_json_text


def concat_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns may differ; a column whose types cannot be promoted
    (a number in one table, a string in another) becomes text in all of them, so no value is lost."""
    tables = [t for t in tables if t.num_columns or t.num_rows]
    if not tables:
        return pa.table({})
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for fld in table.schema:
            types.setdefault(fld.name, set()).add(fld.type)
    conflicting = {name for name, seen in types.items() if len(seen) > 1}
    return pa.concat_tables(
        [_columns_as_text(t, conflicting) for t in tables], promote_options="permissive"
    )


def _columns_as_text(table: pa.Table, names: set[str]) -> pa.Table:
    for index, fld in enumerate(table.schema):
        if fld.name in names and not pa.types.is_string(fld.type):
            table = table.set_column(index, fld.name, to_text(table.column(index)))
    return table


def to_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any column as strings; nested values become JSON text."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return to_json_text(column)
    return column.cast(pa.string())
