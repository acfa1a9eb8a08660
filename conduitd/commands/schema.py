"""`conduitd schema` (infer a source's schema and export it) and `conduitd schema-compare`
(drift between the source and its table, or a saved schema)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from conduitd.config import Config, PipelineConfig
from conduitd.core.schema import Column
from conduitd.destinations import make_destination
from conduitd.errors import ConfigError, ExitCode
from conduitd.oserrors import unwritable
from conduitd.runtime.inspection import (
    SchemaDiff,
    columns_from_export,
    describe,
    inspect,
    sample,
    sample_batches,
    source_columns,
)


def schema_format(fmt: str | None, output: str | None) -> str:
    """`--format`, else the `-o` file's suffix (`.yaml`/`.yml`: yaml, the seed's `schema -o out.yaml`),
    else json."""
    if fmt is not None:
        return fmt
    return "yaml" if output is not None and Path(output).suffix.lower() in (".yaml", ".yml") else "json"


async def export_schema(config: Config, pipeline: PipelineConfig, *, fmt: str, output: str | None,
                        sample_size: int) -> int:
    destination = make_destination(config.destination(pipeline.destination))
    rows = await sample(config, pipeline, sample_size)
    document: dict[str, Any] = {
        "pipeline": pipeline.name, "source": pipeline.source, "table": pipeline.table_name,
        "sampled_rows": rows.num_rows,
        "columns": [{**describe(c), "nullable": bool(rows.column(c.name).null_count) or rows.num_rows == 0}
                    for c in source_columns(destination.dialect, rows)],
    }
    text = (yaml.safe_dump(document, sort_keys=False) if fmt == "yaml"
            else orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    if output:
        try:
            await asyncio.to_thread(Path(output).write_text, text)
        except OSError as exc:
            raise unwritable(output, "-o", exc) from None
        print(f"wrote the schema of {pipeline.name} ({len(document['columns'])} columns, "
              f"{rows.num_rows} sampled rows) to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def compare_schema(config: Config, pipeline: PipelineConfig, *, baseline: str | None, as_json: bool,
                         sample_size: int) -> int:
    destination = make_destination(config.destination(pipeline.destination))
    batches = await sample_batches(config, pipeline, sample_size)
    if baseline:
        try:
            document = yaml.safe_load(await asyncio.to_thread(Path(baseline).read_text))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{baseline}: cannot read the baseline schema: {exc}") from None
        against = f"baseline {baseline}"
        table: dict[str, Column] | None = columns_from_export(document, destination.dialect)
    else:
        against = f"table {pipeline.table_name}"
        await destination.open(read_only=True)
        try:
            table = await destination.table_columns(pipeline.table_name)
        finally:
            await destination.close()
    # The differences, each with what `run` would do about it: the plan `run` uses, as a dry run.
    diff = await asyncio.to_thread(inspect, destination.dialect, pipeline, batches, table)
    sampled = sum(b.rows.num_rows for b in batches)
    if as_json:
        body = {"pipeline": pipeline.name, "against": against, "sampled_rows": sampled,
                "drifted": diff.drifted, **diff.as_dict()}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_diff(pipeline, against, sampled, diff)
    return int(ExitCode.SCHEMA if diff.drifted else ExitCode.OK)


def _print_diff(pipeline: PipelineConfig, against: str, sampled: int, diff: SchemaDiff) -> None:
    print(f"{pipeline.name}: source ({sampled} sampled rows) against {against}")
    if not sampled:
        print("  the source has no records to compare yet")
    if diff.missing_table:
        print("  the table does not exist")
    rows = ([("added", c.name, c.sql, diff.verdicts[c.name].text) for c in diff.added]
            + [("removed", c.name, c.sql, diff.verdicts[c.name].text) for c in diff.removed]
            + [("changed", d.name, f"{d.sql} <- {s.sql}", why) for d, s, why in diff.changed]
            + [("unstorable", repr(n)[1:-1], "-", why) for n, why in diff.unstorable.items()])
    if rows:
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        for kind, name, kinds, note in rows:
            print(f"  {kind:<{width[0]}}  {name:<{width[1]}}  {kinds:<{width[2]}}  {note}")
    for ddl in diff.would_apply:
        print(f"  run would apply: {ddl}")
    for ddl in diff.migrations:
        print(f"  run would write to a migration file: {ddl}")
    if diff.stop is not None:
        print(f"  run stops (exit 4): {diff.stop}")
    print("  drift found" if diff.drifted else "  no drift")
