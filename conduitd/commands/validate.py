"""`conduitd validate`: config, rules, connectivity and schema compatibility; writes nothing."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import orjson

from conduitd.commands.outputs import output_problems
from conduitd.config import Config, ResourceConfig
from conduitd.core.redact import redact
from conduitd.destinations import Destination, make_destination
from conduitd.errors import ConduitError, ConfigError, ExitCode
from conduitd.runtime.inspection import compare, sample
from conduitd.sources import check_source

SAMPLE_ROWS = 1000


@dataclass
class Check:
    resource: str
    check: str
    status: str
    """ok, warning, invalid, incompatible, unreachable"""
    detail: str


async def validate(config: Config, resources: Sequence[str], *, as_json: bool = False) -> int:
    checks: list[Check] = []
    for resource in config.resources:
        if not resources or resource.name in resources:
            checks += await _validate_resource(config, resource)
    _report(checks, as_json)
    codes = {"invalid": ExitCode.CONFIG, "incompatible": ExitCode.SCHEMA, "unreachable": ExitCode.UNREACHABLE}
    return int(max((codes.get(c.status, ExitCode.OK) for c in checks), default=ExitCode.OK))


async def _validate_resource(config: Config, resource: ResourceConfig) -> list[Check]:
    name = resource.name
    checks = [Check(name, "config", "ok", f"{resource.source} -> {resource.destination}.{resource.table_name} "
                                          f"({resource.mode})"),
              Check(name, "quality rules", "ok", f"{len(resource.quality_checks)} rule(s) valid")]
    source = config.source(resource.source)
    try:
        checks.append(Check(name, "source", "ok", await check_source(source)))
    except ConduitError as exc:
        checks.append(Check(name, "source", "invalid" if isinstance(exc, ConfigError) else "unreachable", str(exc)))
    destination = make_destination(config.destination(resource.destination))
    try:
        await destination.open(read_only=True)
        await destination.ping()
        checks.append(Check(name, "destination", "ok", "reachable"))
        checks += [Check(name, "destination", "invalid", problem)
                   for problem in await destination.write_problems(resource)]
        if all(c.status == "ok" for c in checks):
            checks += await _schema_checks(config, resource, destination)
    except ConduitError as exc:
        checks.append(Check(name, "destination", "unreachable", str(exc)))
    finally:
        await destination.close()
    # After the schema checks (which run only while everything else is ok): a file the run could
    # not write is reported beside them, as `run` would stop on it.
    return checks + [Check(name, what, "invalid", why) for what, why in output_problems(config, resource)]


async def _schema_checks(config: Config, resource: ResourceConfig, destination: Destination) -> list[Check]:
    name, policy = resource.name, resource.schema_evolution
    rows = await sample(config, resource, SAMPLE_ROWS, wait=15.0)
    if rows.num_rows == 0:
        return [Check(name, "schema", "warning", "the source has no records to compare yet")]
    table = await destination.table_columns(resource.table_name)
    diff = compare(destination.dialect, rows, table, resource.unique_key)
    # A field the destination cannot take as a column is a schema problem even where `run` goes on
    # (its rows with a value there go to the DLQ).
    checks = [Check(name, f"schema: {column[:60]!r}", "incompatible", f"{why}: rows with a value there go to the DLQ")
              for column, why in diff.unstorable.items()]
    if diff.missing_table:
        return [*checks, Check(name, "schema", "ok", f"table {resource.table_name!r} does not exist: it will be "
                                                     f"created with {len(diff.added)} column(s)")]
    missing_key = [k for k in resource.unique_key if k not in rows.column_names]
    if missing_key:
        checks.append(Check(name, "schema: unique_key", "incompatible",
                            f"unique_key column(s) {missing_key} are not in the source"))
    for column in diff.added:
        status = "incompatible" if policy.mode == "strict" else "warning"
        action = {"auto": "will be added", "manual": "needs a migration (rows go to the DLQ until then)",
                  "warn": "its values will not be written", "strict": "stops the pipeline"}[policy.mode]
        checks.append(Check(name, f"schema: {column.name}", status,
                            f"in the source ({column.sql}), not in the table: {action}"))
    for column in diff.removed:
        stop = policy.mode == "strict" or policy.on_column_removed == "fail"
        checks.append(Check(name, f"schema: {column.name}", "incompatible" if stop else "warning",
                            f"in the table ({column.sql}), not in the source: "
                            + ("stops the pipeline" if stop else "rows get NULL")))
    for column, natural, why in diff.changed:
        checks.append(Check(name, f"schema: {column.name}", "incompatible",
                            f"type mismatch: table {column.sql}, source {natural.sql}: {why}"))
    if not checks:
        checks.append(Check(name, "schema", "ok", f"{rows.num_columns} column(s) match the table"))
    return checks


def _report(checks: Sequence[Check], as_json: bool) -> None:
    checks = [Check(c.resource, c.check, c.status, redact(c.detail)) for c in checks]  # no secret in any output
    if as_json:
        sys.stdout.write(orjson.dumps([asdict(c) for c in checks], option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    widths = [max(len(getattr(c, f)) for c in [*checks, Check("resource", "check", "status", "")])
              for f in ("resource", "check", "status")]
    print(f"{'resource':<{widths[0]}}  {'check':<{widths[1]}}  {'status':<{widths[2]}}  detail")
    for c in checks:
        print(f"{c.resource:<{widths[0]}}  {c.check:<{widths[1]}}  {c.status:<{widths[2]}}  {c.detail}")
    bad = [c for c in checks if c.status in ("invalid", "incompatible", "unreachable")]
    print("all checks passed" if not bad else f"{len(bad)} problem(s)")
