"""Dagster assets built from a conduitd config: each pipeline's destination table is an asset,
keyed [*key_prefix, destination, table], materialized by one bounded run of the pipeline. The
materialization carries the run's rows (read, written, rejected to the DLQ), source positions
before and after, and schema changes; each of the pipeline's `quality_checks` rules is an asset
check, passed when this run found no row breaking it (severity WARN for `action: warn` rules,
ERROR otherwise). A failed run fails the step with conduitd's reason; only exit 5 allows the
step's retry policy to retry it."""

# No `from __future__ import annotations`: Dagster reads the asset function's `context` annotation
# as a class, not a string.
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from conduitd.config import PipelineConfig
from conduitd.configfile import load_config
from dagster import AssetExecutionContext

from conduitd_orchestrators.local import DEFAULT_COMMAND, run_local
from conduitd_orchestrators.summary import ConduitdRunFailed, RunSummary


def check_name(rule: str) -> str:
    """The asset check's name for a quality rule's name (`range:age` -> `range_age`): Dagster
    names allow letters, digits and underscores only."""
    return re.sub(r"\W", "_", rule)


def table_asset_key(pipeline: PipelineConfig, key_prefix: Sequence[str] = ("conduitd",)) -> dg.AssetKey:
    return dg.AssetKey([*key_prefix, pipeline.destination, pipeline.table_name])


def conduitd_assets(config: str | Path, *, pipelines: Sequence[str] | None = None,
                    manifest_path: str | Path | None = None, key_prefix: Sequence[str] = ("conduitd",),
                    group_name: str = "conduitd", command: Sequence[str] = DEFAULT_COMMAND,
                    timeout: float | None = None, retry_policy: dg.RetryPolicy | None = None
                    ) -> list[dg.AssetsDefinition]:
    """The assets of the config's pipelines (all of them, or those named in `pipelines`). The
    config is read now (a config error raises conduitd's ConfigError) and run later, when an
    asset is materialized; its `service.manifest_path` (or `manifest_path`) must be set.
    `retry_policy` applies to runs that exited 5 only: other failures do not allow retries."""
    loaded = load_config(config, environ=dict(os.environ))
    types = {d.name: str(getattr(d, "type", "")) for d in loaded.destinations}
    chosen = [p for p in loaded.resources if pipelines is None or p.name in pipelines]
    unknown = set(pipelines or ()) - {p.name for p in chosen}
    if unknown:
        raise ValueError(f"no pipeline {sorted(unknown)} in {config}")
    return [_asset(str(config), p, types.get(p.destination, ""), manifest_path, key_prefix, group_name,
                   tuple(command), timeout, retry_policy) for p in chosen]


def _asset(config: str, pipeline: PipelineConfig, destination_type: str, manifest_path: str | Path | None,
           key_prefix: Sequence[str], group_name: str, command: tuple[str, ...], timeout: float | None,
           retry_policy: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    key = table_asset_key(pipeline, key_prefix)
    rules = {check_name(rule.rule): rule for rule in pipeline.quality_checks}
    specs = [dg.AssetCheckSpec(name, asset=key, description=f"quality rule {rule.rule} ({rule.check} on "
                               f"{rule.column}, action {rule.action}): no row of the run breaks it")
             for name, rule in rules.items()]

    @dg.asset(key=key, check_specs=specs, group_name=group_name, kinds={"conduitd", destination_type} - {""},
              retry_policy=retry_policy,
              description=f"Table {pipeline.table_name} of destination {pipeline.destination}, loaded by "
                          f"conduitd pipeline {pipeline.name} from source {pipeline.source}.",
              metadata={"pipeline": pipeline.name, "config": config})
    def load_table(context: AssetExecutionContext) -> dg.MaterializeResult:
        try:
            summary = run_local(config, pipeline.name, manifest_path=manifest_path, command=command, timeout=timeout)
        except ConduitdRunFailed as failed:
            raise dg.Failure(description=str(failed), allow_retries=failed.retriable,
                             metadata={"exit_code": failed.exit_code, "reason": failed.reason,
                                       **(_metadata(failed.summary) if failed.summary else {})}) from None
        context.log.info(f"pipeline {pipeline.name}: {summary.rows_written} rows written, {summary.dlq_rows} rejected")
        return dg.MaterializeResult(metadata=_metadata(summary), check_results=[
            dg.AssetCheckResult(check_name=name, passed=not _violations(summary, rule.rule),
                                severity=dg.AssetCheckSeverity.WARN if rule.action == "warn" else
                                dg.AssetCheckSeverity.ERROR,
                                metadata={"violations": _violations(summary, rule.rule), "rule": rule.rule,
                                          "action": rule.action})
            for name, rule in rules.items()])

    return load_table


def _violations(summary: RunSummary, rule: str) -> int:
    return sum(summary.quality.get(rule, {}).values())


def _metadata(summary: RunSummary) -> dict[str, Any]:
    return {
        "rows_read": summary.rows_read, "rows_written": summary.rows_written, "rejects": summary.dlq_rows,
        "rows_deleted": summary.rows_deleted, "status": summary.status,
        "rejects_by_rule": dg.MetadataValue.json(summary.dlq_rows_by_rule),
        "quality": dg.MetadataValue.json(summary.quality),
        "positions_before": dg.MetadataValue.json(summary.positions_before),
        "positions_after": dg.MetadataValue.json(summary.positions_after),
        "schema_changes": dg.MetadataValue.json(summary.schema_changes),
        "duration_s": summary.duration_s or 0.0,
    }
