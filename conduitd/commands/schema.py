"""`conduitd schema` (infer a source's schema and export it) and `conduitd schema-compare`
(drift between the source and its table, or a saved schema)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from conduitd.config import Config, ResourceConfig
from conduitd.core.oserrors import unwritable
from conduitd.core.schema import Column
from conduitd.destinations import make_destination
from conduitd.errors import ConfigError, ExitCode
from conduitd.runtime.inspection import columns_from_export, compare, describe, sample, source_columns


async def export_schema(config: Config, resource: ResourceConfig, *, fmt: str, output: str | None,
                        sample_size: int) -> int:
    destination = make_destination(config.destination(resource.destination))
    rows = await sample(config, resource, sample_size)
    document: dict[str, Any] = {
        "resource": resource.name, "source": resource.source, "table": resource.table_name,
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
        print(f"wrote the schema of {resource.name} ({len(document['columns'])} columns, "
              f"{rows.num_rows} sampled rows) to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def compare_schema(config: Config, resource: ResourceConfig, *, baseline: str | None, as_json: bool,
                         sample_size: int) -> int:
    destination = make_destination(config.destination(resource.destination))
    rows = await sample(config, resource, sample_size)
    if baseline:
        try:
            document = yaml.safe_load(await asyncio.to_thread(Path(baseline).read_text))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{baseline}: cannot read the baseline schema: {exc}") from None
        against = f"baseline {baseline}"
        table: dict[str, Column] | None = columns_from_export(document, destination.dialect)
    else:
        against = f"table {resource.table_name}"
        await destination.open(read_only=True)
        try:
            table = await destination.table_columns(resource.table_name)
        finally:
            await destination.close()
    diff = compare(destination.dialect, rows, table, resource.unique_key)
    if as_json:
        body = {"resource": resource.name, "against": against, "sampled_rows": rows.num_rows,
                "drifted": diff.drifted, **diff.as_dict()}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_diff(resource, against, rows.num_rows, diff.as_dict(), diff.drifted)
    return int(ExitCode.SCHEMA if diff.drifted else ExitCode.OK)


def _print_diff(resource: ResourceConfig, against: str, sampled: int, diff: dict[str, Any], drifted: bool) -> None:
    print(f"{resource.name}: source ({sampled} sampled rows) against {against}")
    if diff["missing_table"]:
        print("  the table does not exist")
    rows = ([("added", c["name"], c["type"], "in the source only") for c in diff["added"]]
            + [("removed", c["name"], c["type"], "in the destination only") for c in diff["removed"]]
            + [("changed", c["column"], f"{c['destination']} <- {c['source']}", c["problem"])
               for c in diff["changed"]]
            + [("unstorable", c["column"], "-", c["problem"]) for c in diff["unstorable"]])
    if rows:
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        for kind, name, kinds, note in rows:
            print(f"  {kind:<{width[0]}}  {name:<{width[1]}}  {kinds:<{width[2]}}  {note}")
    print("  drift found" if drifted else "  no drift")
