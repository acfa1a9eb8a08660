"""Reading what a file destination published: a table's parts as one Arrow table (parts written
before a column was added read as null there), and the DLQ's entries. Blocking."""

from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa

from conduitd.destinations.base import DlqEntry
from conduitd.destinations.files import formats
from conduitd.destinations.files.settings import Format
from conduitd.destinations.files.state import State
from conduitd.destinations.files.storage import Storage


def read_table(storage: Storage, state: State, table: str, fmt: Format) -> pa.Table | None:
    """Every published row of `table` in the order written, with the table's columns; None when
    the table does not exist."""
    found = state.tables.get(table)
    if found is None:
        return None
    columns = found.as_columns()
    schema = pa.schema([pa.field(c.name, c.arrow) for c in columns.values()])
    pieces = []
    for part in found.parts:
        with storage.open_input(part.name) as stream:
            piece = formats.read(stream, fmt, columns)
        pieces.append(pa.table({n: piece.column(n).cast(schema.field(n).type) if n in piece.column_names
                                else pa.nulls(piece.num_rows, schema.field(n).type) for n in schema.names}))
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def read_dlq(storage: Storage, state: State, dlq_table: str) -> list[DlqEntry]:
    """Every entry of the DLQ table, oldest first."""
    entries = []
    for name in state.dlq.get(dlq_table, []):
        data = storage.read(name) or b""
        for line in data.splitlines():
            if not line.strip():
                continue
            r = orjson.loads(line)
            entries.append(DlqEntry(r["id"], r["pipeline"], r["partition"], r["position"], r["rule"], r["reason"],
                                    r["column"], r["value"], r["payload"], datetime.fromisoformat(r["created_at"])))
    return sorted(entries, key=lambda e: int(e.id))
