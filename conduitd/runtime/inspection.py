"""Looking without writing: sample a source, infer its schema, compare it with a table or a saved
schema. Used by `conduitd schema`, `schema-compare` and `validate`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.config import Config, KafkaSourceConfig, ResourceConfig, SourceConfig
from conduitd.core.arrowutil import concat_tables
from conduitd.core.dialect import Dialect
from conduitd.core.evolution import ambiguous_fields, over_column_limit, refused_names
from conduitd.core.records import Position
from conduitd.core.schema import Column, cast_column, column_slots, refine_types
from conduitd.runtime.batching import repeats_names
from conduitd.sources import check_source, open_source


class _FromTheStart:
    """Checkpoints of a sample read: nothing is committed, every partition starts at its start."""

    async def committed(self) -> dict[str, Position]:
        return {}

    async def revoke(self) -> None:
        return None


async def sample(config: Config, resource: ResourceConfig, rows: int, wait: float = 30.0) -> pa.Table:
    """Up to `rows` records of the resource's source, decoded as a pipeline would (nothing is
    committed; a Kafka source reads with a throwaway consumer group so running daemons are not
    disturbed)."""
    source_config: SourceConfig = config.source(resource.source)
    if isinstance(source_config, KafkaSourceConfig):
        # Brokers that do not answer are DependencyUnreachable, as in `validate`: a sample that
        # merely timed out would pass for an empty source (no columns, no drift to see).
        await check_source(source_config)
        source_config = source_config.model_copy(
            update={"group_id": f"{source_config.group_id}-inspect-{uuid.uuid4().hex[:8]}", "start": "earliest"})
    source = open_source(source_config, resource, config.service, once=True)
    tables: list[pa.Table] = []
    count = 0
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(wait):
            async for chunk in source.chunks(_FromTheStart(), stop):
                decoded = chunk.rows
                if chunk.deletes is not None:  # a tombstone's row holds only a key: not a record's shape
                    decoded = decoded.filter(pa.array(~np.asarray(chunk.deletes, dtype=bool)))
                tables.append(decoded)
                count += decoded.num_rows
                if count >= rows:
                    stop.set()
                    break
    except TimeoutError:
        pass
    finally:
        await source.close()
    # A table with a repeated column name joins no other: it alone is what the diff reports on.
    repeated = [t for t in tables if repeats_names(t)]
    table = repeated[0] if repeated else concat_tables(tables)
    # Cut only what is over: pyarrow's slice of a table without columns claims the slice's length
    # as its row count (an empty sample reported `rows` rows).
    return refine_types(table.slice(0, rows) if table.num_rows > rows else table)


@dataclass
class SchemaDiff:
    """Source against destination, column by column."""

    added: list[Column] = field(default_factory=list)
    """In the source, not in the destination."""
    removed: list[Column] = field(default_factory=list)
    """In the destination, not in the source."""
    changed: list[tuple[Column, Column, str]] = field(default_factory=list)
    """(destination column, the source's natural column, why the values do not fit)."""
    missing_table: bool = False
    unstorable: dict[str, str] = field(default_factory=dict)
    """Source fields the destination cannot take as columns, with why (the reason `run` gives the
    DLQ rows that have a value there): a name it refuses, a repeated field, past the column limit."""

    @property
    def drifted(self) -> bool:
        return self.missing_table or bool(self.added or self.removed or self.changed or self.unstorable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing_table": self.missing_table,
            "added": [describe(c) for c in self.added],
            "removed": [describe(c) for c in self.removed],
            "changed": [{"column": d.name, "destination": d.sql, "source": s.sql, "problem": why}
                        for d, s, why in self.changed],
            "unstorable": [{"column": name, "problem": why} for name, why in self.unstorable.items()],
        }


def describe(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": column.sql, "arrow": str(column.arrow)}


def source_columns(dialect: Dialect, rows: pa.Table) -> list[Column]:
    return [dialect.column_for(f.name, f.type) for f in rows.schema]


def compare(dialect: Dialect, rows: pa.Table, table: Mapping[str, Column] | None,
            key: Sequence[str] = ()) -> SchemaDiff:
    """Which source columns the table lacks, which table columns the source lacks, which source
    values would not fit their table column, and which fields the destination cannot take as
    columns at all (decided as `run` decides them: `conduitd.core.evolution`)."""
    rows, unstorable = ambiguous_fields(rows)
    unstorable.update(refused_names(dialect, rows.column_names, table, key))
    new = [n for n in rows.column_names if n not in unstorable and (table is None or n not in table)]
    unstorable.update(over_column_limit(dialect, new, column_slots(table), key))
    natural = {c.name: c for c in source_columns(dialect, rows) if c.name not in unstorable}
    if table is None:
        return SchemaDiff(added=list(natural.values()), missing_table=True, unstorable=unstorable)
    diff = SchemaDiff(unstorable=unstorable)
    diff.added = [c for n, c in natural.items() if n not in table]
    diff.removed = [c for n, c in table.items() if n not in natural and n not in unstorable]
    for name, column in table.items():
        if name not in natural:
            continue
        _, failed = cast_column(rows.column(name), column)
        if failed.any():
            sample = rows.column(name)[int(failed.argmax())].as_py()
            why = f"{int(failed.sum())} of {rows.num_rows} sampled values do not fit (e.g. {str(sample)[:60]!r})"
            diff.changed.append((column, natural[name], why))
    return diff


def columns_from_export(document: Mapping[str, Any], dialect: Dialect) -> dict[str, Column]:
    """Columns of a schema file written by `conduitd schema` (the baseline of schema-compare)."""
    columns = {}
    for entry in document.get("columns", []):
        arrow = _arrow_type(str(entry.get("arrow", "string")))
        column = dialect.column_for(entry["name"], arrow)
        columns[entry["name"]] = Column(column.name, column.arrow, str(entry.get("type", column.sql)),
                                        column.json, column.native)
    return columns


def _arrow_type(text: str) -> pa.DataType:
    simple = {"int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
              "date32[day]": pa.date32(), "binary": pa.binary(), "null": pa.null()}
    if text in simple:
        return simple[text]
    if text.startswith("timestamp["):
        return pa.timestamp("us", tz="UTC") if "tz=" in text else pa.timestamp("us")
    if text.startswith("decimal128("):
        precision, scale = text[len("decimal128("):-1].split(",")
        return pa.decimal128(int(precision), int(scale))
    if text.startswith(("struct", "list", "large_list", "map")):
        return pa.struct([])
    return pa.string()
