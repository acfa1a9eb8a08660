"""Looking without writing: sample a source, infer its schema, and tell what `run` would do with
the sample against a table or a saved schema (`conduitd.runtime.dryrun`: the plan `run` uses).
Used by `conduitd schema`, `schema-compare` and `validate`."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.config import Config, KafkaSourceConfig, PipelineConfig, SchemaEvolutionConfig, SourceConfig
from conduitd.core.arrowutil import concat_tables
from conduitd.core.dialect import Dialect
from conduitd.core.evolution import ambiguous_fields
from conduitd.core.records import Batch, Chunk, Origin
from conduitd.core.schema import Column, logical_type, refine_types
from conduitd.runtime.batching import END, ChunkQueue, cut_batches, repeats_names
from conduitd.runtime.dryrun import DryRun, dry_run
from conduitd.sources import check_source, open_source
from conduitd.sources.base import FixedCheckpoints


async def _read(config: Config, pipeline: PipelineConfig, rows: int, wait: float) -> list[Chunk]:
    """The source's first chunks, cut to `rows` rows in all, decoded as a pipeline decodes them
    (nothing is committed; a Kafka source reads with a throwaway consumer group so running
    daemons are not disturbed)."""
    source_config: SourceConfig = config.source(pipeline.source)
    if isinstance(source_config, KafkaSourceConfig):
        # Brokers that do not answer are DependencyUnreachable, as in `validate`: a sample that
        # merely timed out would pass for an empty source (no columns, no drift to see).
        await check_source(source_config)
        source_config = source_config.model_copy(
            update={"group_id": f"{source_config.group_id}-inspect-{uuid.uuid4().hex[:8]}", "start": "earliest"})
    source = open_source(source_config, pipeline, config.service, once=True)
    chunks: list[Chunk] = []
    count = 0
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(wait):
            async for chunk in source.chunks(FixedCheckpoints(done=stop), stop):
                if count + chunk.rows.num_rows > rows:
                    chunk = _head(chunk, rows - count)
                chunks.append(chunk)
                count += chunk.rows.num_rows
                if count >= rows:
                    stop.set()
                    break
    except TimeoutError:
        pass
    finally:
        await source.close()
    return chunks


def _head(chunk: Chunk, rows: int) -> Chunk:
    """The chunk's first `rows` rows (its end position no longer matches: a sample never commits)."""
    return dataclasses.replace(
        chunk, rows=chunk.rows.slice(0, rows),
        row_offsets=None if chunk.row_offsets is None else chunk.row_offsets[:rows],
        deletes=None if chunk.deletes is None else chunk.deletes[:rows])


async def sample(config: Config, pipeline: PipelineConfig, rows: int, wait: float = 30.0) -> pa.Table:
    """Up to `rows` records of the pipeline's source as one table, each column with the type a new
    table would give it (deletes left out: a tombstone's row holds only a key)."""
    tables = []
    for chunk in await _read(config, pipeline, rows, wait):
        decoded = chunk.rows
        if chunk.deletes is not None:
            decoded = decoded.filter(pa.array(~np.asarray(chunk.deletes, dtype=bool)))
        tables.append(decoded)
    # A table with a repeated column name joins no other: it alone is what is reported on.
    repeated = [t for t in tables if repeats_names(t)]
    return refine_types(repeated[0] if repeated else concat_tables(tables))


async def sample_batches(config: Config, pipeline: PipelineConfig, rows: int, wait: float = 30.0) -> list[Batch]:
    """Up to `rows` records of the pipeline's source, cut into batches as `run` cuts them
    (`pipeline.batch`; the sample is read before the batches are cut, so `max_wait` plays no part)."""
    queue = ChunkQueue()
    for chunk in await _read(config, pipeline, rows, wait):
        queue.put_nowait(chunk)
    queue.put_nowait(END)
    return [batch async for batch in cut_batches(queue, pipeline.batch)]


@dataclass(frozen=True)
class Verdict:
    """What `run` would do about one difference."""

    text: str
    problem: bool
    """`run` would stop, or put sampled rows in the DLQ."""
    reached: bool = True
    """False: `run` stops before it comes to this difference (the text says on what)."""


@dataclass
class SchemaDiff:
    """Source against destination, column by column, each difference with what `run` would do
    about it (its verdict: `conduitd.runtime.dryrun`)."""

    verdict: DryRun
    """The dry run under the pipeline's policy, whole."""
    added: list[Column] = field(default_factory=list)
    """In the source, not in the destination."""
    removed: list[Column] = field(default_factory=list)
    """In the destination, not in the source."""
    changed: list[tuple[Column, Column, str]] = field(default_factory=list)
    """(destination column, the source's natural column, what run does): values that do not fit."""
    unstorable: dict[str, str] = field(default_factory=dict)
    """Source fields the destination cannot take as columns (a name it refuses, a repeated field,
    past the column limit), with what run does: their rows go to the DLQ."""
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    """Field or column name -> what `run` would do about its difference."""

    @property
    def missing_table(self) -> bool:
        return self.verdict.live is None

    @property
    def stop(self) -> str | None:
        """Why `run` would stop (exit 4), or None."""
        return None if self.verdict.stop is None else str(self.verdict.stop)

    @property
    def would_apply(self) -> list[str]:
        """The DDL `run` would execute in the batch transaction."""
        return [c.ddl for c in self.verdict.changes if c.applied and c.ddl]

    @property
    def migrations(self) -> list[str]:
        """The DDL `run` would write to a migration file and not apply (manual mode)."""
        return [c.ddl for c in self.verdict.changes if not c.applied and c.ddl]

    @property
    def dead_lettered(self) -> int:
        """Sampled rows `run` would put in the DLQ for their schema."""
        return sum(self.verdict.dead_lettered.values())

    @property
    def drifted(self) -> bool:
        return (self.missing_table or self.stop is not None or self.dead_lettered > 0
                or bool(self.added or self.removed or self.changed or self.unstorable))

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing_table": self.missing_table,
            "added": [{**describe(c), "verdict": self.verdicts[c.name].text} for c in self.added],
            "removed": [{**describe(c), "verdict": self.verdicts[c.name].text} for c in self.removed],
            "changed": [{"column": d.name, "destination": d.sql, "source": s.sql, "problem": why}
                        for d, s, why in self.changed],
            "unstorable": [{"column": n, "problem": why} for n, why in self.unstorable.items()],
            "would_apply": self.would_apply,
            "migrations": self.migrations,
            "dead_lettered_rows": self.dead_lettered,
            "stops": self.stop,
        }


def describe(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": column.sql, "arrow": str(column.arrow)}


def source_columns(dialect: Dialect, rows: pa.Table) -> list[Column]:
    return [dialect.column_for(f.name, logical_type(f)) for f in rows.schema]


def compare(dialect: Dialect, rows: pa.Table, table: Mapping[str, Column] | None,
            key: Sequence[str] = ()) -> SchemaDiff:
    """`inspect` of one batch of `rows` under the default policy (`schema_evolution: auto`)."""
    pipeline = PipelineConfig.model_validate({"name": "inspect", "source": "-", "destination": "-",
                                              "unique_key": list(key)})
    batch = Batch(rows, (), {}, {}, 0, (Origin(0, "sample", None),))
    return inspect(dialect, pipeline, [batch], None if table is None else dict(table))


def inspect(dialect: Dialect, pipeline: PipelineConfig, batches: Sequence[Batch],
            table: dict[str, Column] | None) -> SchemaDiff:
    """What differs between `batches` and `table`, and what `run` would do about each difference.

    Two dry runs of the same plan: one under the pipeline's own `schema_evolution` (the verdict),
    one under the most permissive policy, without repeated fields (the list of differences: a
    policy that stops, or a repeated field that sends every row of its batch to the DLQ, would hide
    the differences after it)."""
    verdict = dry_run(dialect, pipeline, batches, table)
    permissive = pipeline.model_copy(update={"schema_evolution": SchemaEvolutionConfig(
        mode="auto", on_type_change="widen", on_column_removed="warn",
        migrations_dir=pipeline.schema_evolution.migrations_dir)})
    ambiguous: dict[str, str] = {}
    plain = []
    for batch in batches:
        rows, repeated = ambiguous_fields(batch.rows)
        ambiguous.update(repeated)
        plain.append(dataclasses.replace(batch, rows=rows) if repeated else batch)
    listing = dry_run(dialect, permissive, plain, table)
    return _diff(dialect, verdict, listing, ambiguous, plain)
def _diff(dialect: Dialect, verdict: DryRun, listing: DryRun, ambiguous: Mapping[str, str],
          batches: Sequence[Batch]) -> SchemaDiff:
    diff = SchemaDiff(verdict)
    table = listing.live or {}
    natural = {c.name: c for c in source_columns(dialect, refine_types(concat_tables([b.rows for b in batches])))}
    names = [*ambiguous, *(n for n in listing.held if n not in ambiguous)]
    after = listing.columns or {}
    widened = {c.column for c in listing.changes if c.kind == "widen"}
    changed = [n for n in table if n in widened or ("cast", n) in listing.dead_lettered]
    for name in [*names, *after, *table]:
        diff.verdicts.setdefault(name, _verdict_of(verdict, name))
    diff.unstorable = {n: diff.verdicts[n].text for n in names}
    diff.added = [after[n] for n in after if n not in table]
    diff.changed = [(table[n], natural.get(n, table[n]), diff.verdicts[n].text) for n in changed]
    diff.removed = [table[n] for n in listing.removed]
    return diff


def _verdict_of(verdict: DryRun, name: str) -> Verdict:
    """What `run` does about the field or column `name`, in its own words."""
    parts: list[str] = []
    problem = False
    if name not in verdict.held:  # a held column's reason names its migration already
        parts += [f"would apply: {c.ddl}" if c.applied else f"needs a migration (written to migrations_dir): {c.ddl}"
                  for c in verdict.changes if c.column == name and c.kind != "create"]
    for rule, reason in (("schema", verdict.held.get(name)), ("cast", verdict.reasons.get(("cast", name)))):
        if reason is not None:
            count = verdict.dead_lettered[(rule, name)]
            rows = f"{count} of {verdict.rows} sampled rows" if count else "rows with a value there"
            parts.append(f"{rows} go to the DLQ: {reason}")
            problem = True
    if name in verdict.dropped:
        parts.append("its values are not written (schema_evolution warn)")
    if name in verdict.removed:
        parts.append("rows get NULL there")
    if not parts and verdict.live is None and name in (verdict.columns or {}):
        parts.append("a column of the new table")
    if not parts and verdict.stop is not None:
        return Verdict(f"run stops first: {verdict.stop}", True, reached=False)
    return Verdict("; ".join(parts) or "no change", problem)


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
