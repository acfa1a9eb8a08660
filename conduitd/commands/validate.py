"""`conduitd validate`: config, rules, connectivity, the outputs a run writes, and what `run`
would do with a sample of the source against the table (the same plan, as a dry run); writes
nothing."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import orjson

from conduitd.commands.outputs import output_problems
from conduitd.config import Config, PipelineConfig
from conduitd.core.redact import redact
from conduitd.destinations import Destination, make_destination
from conduitd.errors import ConduitError, ExitCode
from conduitd.runtime.commit import capability_problem, refresh_problem
from conduitd.runtime.inspection import SchemaDiff, Verdict, inspect, sample_batches
from conduitd.runtime.retry import RetryPolicy
from conduitd.sources import check_source, inspect_source

SAMPLE_ROWS = 1000

STATUS_OF_EXIT = {ExitCode.CONFIG: "invalid", ExitCode.SCHEMA: "incompatible", ExitCode.UNREACHABLE: "unreachable",
                  ExitCode.RUNTIME: "failed"}
EXIT_OF_STATUS = {"invalid": ExitCode.CONFIG, "unreachable": ExitCode.UNREACHABLE, "failed": ExitCode.RUNTIME,
                  "incompatible": ExitCode.SCHEMA}
"""The exit code of each status, first the one that wins: in the order `run` meets the problems
(config and outputs before it reads anything, then connecting, then the data)."""


@dataclass
class Check:
    pipeline: str
    check: str
    status: str
    """ok, warning, invalid, unreachable, failed, incompatible"""
    detail: str


async def validate(config: Config, only: Sequence[str], *, as_json: bool = False) -> int:
    checks = await checks_of(config, only)
    _report(checks, as_json)
    return exit_code_of(checks)


async def checks_of(config: Config, only: Sequence[str], *, sample: bool = True) -> list[Check]:
    """Every check of the pipelines in `only` (all when empty). `sample=False` leaves out what
    reads data (the source's own findings and the schema dry run): config, rules, connectivity,
    outputs and the destination's write problems only (the pre-flight of `run --once`)."""
    checks: list[Check] = _service_checks(config)
    for pipeline in config.resources:
        if not only or pipeline.name in only:
            checks += await _validate_pipeline(config, pipeline, sample=sample)
    return checks


def _service_checks(config: Config) -> list[Check]:
    """The daemon's own settings that are read only when it starts: the API's tokens."""
    api = config.service.api
    if api is None:
        return []
    try:
        from conduitd.api.tokens import Tokens
    except ImportError as exc:
        return [Check("service", "api", "invalid", f"service.api needs the API packages: pip install "
                                                   f"'conduitd[api]' ({exc.name} is missing)")]
    try:
        tokens = Tokens.load(api)
    except ConduitError as exc:
        return [Check("service", "api tokens", "invalid", str(exc))]
    if not tokens.entries:
        return [Check("service", "api tokens", "warning", "no tokens (tokens_file or $CONDUITD_API_TOKENS): every "
                                                          "API request will be refused")]
    return [Check("service", "api tokens", "ok", f"{len(tokens.entries)} token(s)")]


def exit_code_of(checks: Sequence[Check]) -> int:
    """The exit code of the first problem `run` would meet (0 when there is none)."""
    statuses = {c.status for c in checks}
    return int(next((code for status, code in EXIT_OF_STATUS.items() if status in statuses), ExitCode.OK))


def status_of(exc: ConduitError) -> str:
    """How `validate` reports an error that would stop `run` with the same exit code (a
    retriable error outlasts `once_retry_timeout` under `--once`: exit 5)."""
    return "unreachable" if exc.retriable else STATUS_OF_EXIT.get(exc.exit_code, "failed")


async def _validate_pipeline(config: Config, pipeline: PipelineConfig, *, sample: bool) -> list[Check]:
    name = pipeline.name
    checks = [Check(name, "config", "ok", f"{pipeline.source} -> {pipeline.destination}.{pipeline.table_name} "
                                          f"({pipeline.mode})"),
              Check(name, "quality rules", "ok", f"{len(pipeline.quality_checks)} rule(s) valid")]
    if config.service.retry.policy is not None:
        try:
            RetryPolicy.for_service(config.service, once=False)
            checks.append(Check(name, "retry policy", "ok", f"{config.service.retry.policy} (from a package)"))
        except ConduitError as exc:
            checks.append(Check(name, "retry policy", status_of(exc), str(exc)))
    source = config.source(pipeline.source)
    try:
        checks.append(Check(name, "source", "ok", await check_source(source)))
    except ConduitError as exc:
        checks.append(Check(name, "source", status_of(exc), str(exc)))
    outputs = [Check(name, what, "invalid", why) for what, why in output_problems(config, pipeline)]
    if any(c.check.startswith("destinations[") for c in outputs):
        return checks + outputs  # a database file `run` cannot use: opening it would say less
    destination = make_destination(config.destination(pipeline.destination))
    try:
        await destination.open(read_only=True)
        await destination.ping()
        checks.append(Check(name, "destination", "ok", "reachable"))
        for problem in (capability_problem(pipeline, destination.capabilities),
                        refresh_problem(pipeline, destination, once=True)):
            if problem is not None:
                checks.append(Check(name, "destination", "invalid", problem))
        checks += [Check(name, "destination", "invalid", problem)
                   for problem in await destination.write_problems(pipeline)]
        if sample and all(c.status == "ok" for c in checks):
            try:
                positions = await destination.load_checkpoints(pipeline.name)
                checks += [Check(name, what, status, detail)
                           for what, status, detail in await inspect_source(source, pipeline, positions)]
            except ConduitError as exc:
                checks.append(Check(name, "source", status_of(exc), str(exc)))
        if sample and all(c.status == "ok" for c in checks):
            checks += await _schema_checks(config, pipeline, destination)
    except ConduitError as exc:
        checks.append(Check(name, "destination", status_of(exc), str(exc)))
    finally:
        await destination.close()
    # After the schema checks (which run only while everything else is ok): a file the run could
    # not write is reported beside them, as `run` would stop on it.
    return checks + outputs


async def _schema_checks(config: Config, pipeline: PipelineConfig, destination: Destination) -> list[Check]:
    batches = await sample_batches(config, pipeline, SAMPLE_ROWS, wait=15.0)
    if not any(b.rows.num_rows for b in batches):
        return [Check(pipeline.name, "schema", "warning", "the source has no records to compare yet")]
    table = await destination.table_columns(pipeline.table_name)
    return schema_checks(pipeline, await asyncio.to_thread(inspect, destination.dialect, pipeline, batches, table))


def schema_checks(pipeline: PipelineConfig, diff: SchemaDiff) -> list[Check]:
    """The dry run's verdict as checks: `incompatible` where `run` would stop (exit 4) or put
    sampled rows in the DLQ for their schema; `warning` for a change it would apply or log."""
    name, verdict = pipeline.name, diff.verdict
    checks = []
    if diff.stop is not None:
        checks.append(Check(name, "schema", "incompatible", f"run stops (exit 4): {diff.stop}"))
    # Where run stops, what it never reaches is left out: the stop is the one thing to fix first.
    verdicts = diff.verdicts
    checks += [Check(name, f"schema: {n[:60]!r}", "incompatible", verdicts[n].text)
               for n in diff.unstorable if verdicts[n].reached]
    if diff.missing_table and diff.would_apply:
        checks.append(Check(name, "schema", "ok", f"table {pipeline.table_name!r} does not exist: would apply: "
                                                  f"{diff.would_apply[0]}"))
    checks += [Check(name, f"schema: {c.name}", _status(verdicts[c.name]),
                     f"in the source ({c.sql}), not in the table: {verdicts[c.name].text}")
               for c in diff.added if verdicts[c.name].reached and (verdicts[c.name].problem or not diff.missing_table)]
    checks += [Check(name, f"schema: {c.name}", _status(verdicts[c.name]),
                     f"table {c.sql}, source {natural.sql}: {why}")
               for c, natural, why in diff.changed if verdicts[c.name].reached]
    checks += [Check(name, f"schema: {c.name}", _status(verdicts[c.name]),
                     f"in the table ({c.sql}), not in the source: {verdicts[c.name].text}")
               for c in diff.removed if verdicts[c.name].reached]
    for (rule, column), count in verdict.dead_lettered.items():
        if column is None:  # a record with no field the table can take
            checks.append(Check(name, "schema", "incompatible", f"{count} of {verdict.rows} sampled rows go to "
                                                               f"the DLQ: {verdict.reasons[(rule, column)]}"))
    for rule, (count, value) in verdict.quality_stops.items():
        checks.append(Check(name, f"quality: {rule}", "warning", f"{count} of {verdict.rows} sampled rows break "
                                                                 f"this rule (e.g. {value[:60]!r}): run stops with "
                                                                 "exit 3 at the first"))
    if not checks:
        checks.append(Check(name, "schema", "ok", f"{len(verdict.live or {})} column(s) match the table"))
    return checks


def _status(verdict: Verdict) -> str:
    return "incompatible" if verdict.problem else "warning"


def _report(checks: Sequence[Check], as_json: bool) -> None:
    checks = [Check(c.pipeline, c.check, c.status, redact(c.detail)) for c in checks]  # no secret in any output
    if as_json:
        sys.stdout.write(orjson.dumps([asdict(c) for c in checks], option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    widths = [max(len(getattr(c, f)) for c in [*checks, Check("pipeline", "check", "status", "")])
              for f in ("pipeline", "check", "status")]
    print(f"{'pipeline':<{widths[0]}}  {'check':<{widths[1]}}  {'status':<{widths[2]}}  detail")
    for c in checks:
        print(f"{c.pipeline:<{widths[0]}}  {c.check:<{widths[1]}}  {c.status:<{widths[2]}}  {c.detail}")
    bad = [c for c in checks if c.status in EXIT_OF_STATUS]
    print("all checks passed" if not bad else f"{len(bad)} problem(s)")
