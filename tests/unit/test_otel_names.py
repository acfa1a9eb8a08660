"""The OTLP metric names are frozen: every /metrics family has a stable OTel name, and adding or
renaming an instrument fails here until `NAMES` (conduitd/ops/otel_metrics.py), this list and the
README's metric table are updated together."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from conduitd.ops import dbt
from conduitd.ops.metrics import Metrics
from conduitd.ops.otel_metrics import NAMES, attribute, otel_name, to_metrics_data

FROZEN = {  # Prometheus family -> (OTel name, unit); the README's table says the same
    "conduitd_rows_read": ("conduitd.rows_read", "{record}"),
    "conduitd_rows_written": ("conduitd.rows_written", "{row}"),
    "conduitd_dlq_rows": ("conduitd.dlq_rows", "{row}"),
    "conduitd_batches": ("conduitd.batches", "{batch}"),
    "conduitd_checkpoint_conflicts": ("conduitd.checkpoint_conflicts", "{batch}"),
    "conduitd_quality_violations": ("conduitd.quality_violations", "{row}"),
    "conduitd_retries": ("conduitd.retries", "{retry}"),
    "conduitd_commit_seconds": ("conduitd.commit.duration", "s"),
    "conduitd_batch_rows": ("conduitd.batch.records", "{record}"),
    "conduitd_pipeline_ready": ("conduitd.pipeline.ready", "1"),
    "conduitd_last_commit_timestamp_seconds": ("conduitd.last_commit.timestamp", "s"),
    "conduitd_source_problem": ("conduitd.source.problem", "1"),
    "conduitd_manifest_write_errors": ("conduitd.manifest.write_errors", "{record}"),
    "conduitd_source_lag": ("conduitd.source.lag", "1"),
    "conduitd_dbt_runs": ("conduitd.dbt.runs", "{run}"),
    "conduitd_dbt_failing": ("conduitd.dbt.failing", "1"),
    "conduitd_alert_deliveries": ("conduitd.alert.deliveries", "{alert}"),
}


def test_the_names_are_frozen() -> None:
    assert {family: tuple(named) for family, named in NAMES.items()} == FROZEN


def test_every_instrument_of_metrics_has_a_frozen_name() -> None:
    metrics = Metrics()
    dbt.instruments(metrics)  # registered when a pipeline runs dbt
    families = {family.name for family in metrics.registry.collect()}
    assert families == set(FROZEN), (
        f"instruments without a frozen OTel name: {sorted(families - set(FROZEN))}; "
        f"names of instruments that no longer exist: {sorted(set(FROZEN) - families)}")


def test_otel_names_are_unique_and_dotted() -> None:
    names = [name for name, _ in FROZEN.values()]
    assert len(set(names)) == len(names)
    assert all(name.startswith("conduitd.") and "_" not in name.split(".")[0] for name in names)


def test_an_unnamed_family_gets_a_derived_name_and_labels_are_namespaced() -> None:
    assert otel_name("conduitd_alerts_failed") == ("conduitd.alerts_failed", "1")
    assert (attribute("pipeline"), attribute("rule"), attribute("unit")) == (
        "conduitd.pipeline", "conduitd.rule", "conduitd.lag_unit")


def test_counters_and_histograms_convert_to_cumulative_otel_points() -> None:
    from opentelemetry.sdk.metrics.export import AggregationTemporality, Sum
    from opentelemetry.sdk.metrics.export import Histogram as OtelHistogram
    from opentelemetry.sdk.resources import Resource

    registry = CollectorRegistry()
    rows = Counter("conduitd_rows_written", "Rows.", ["pipeline"], registry=registry)
    sizes = Histogram("conduitd_batch_rows", "Sizes.", ["pipeline"], buckets=(1, 10, 100), registry=registry)
    rows.labels("orders").inc(7)
    rows.labels("users").inc(2.5)
    for size in (1, 5, 5, 50, 500):
        sizes.labels("orders").observe(size)
    data = to_metrics_data(registry.collect(), Resource.create({"service.name": "t"}), 2_000, 1_000)
    (scope,) = data.resource_metrics[0].scope_metrics
    by_name = {metric.name: metric for metric in scope.metrics}
    assert set(by_name) == {"conduitd.rows_written", "conduitd.batch.records"}

    written = by_name["conduitd.rows_written"]
    assert isinstance(written.data, Sum) and written.data.is_monotonic
    assert written.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert written.unit == "{row}" and written.description == "Rows."
    values = {point.attributes["conduitd.pipeline"]: point.value for point in written.data.data_points}
    assert values == {"orders": 7, "users": 2.5}
    # A counter starts when its child was created (its `_created` sample), not at the fallback.
    assert all(point.start_time_unix_nano > 1_000 and point.time_unix_nano == 2_000
               for point in written.data.data_points)

    histogram = by_name["conduitd.batch.records"].data
    assert isinstance(histogram, OtelHistogram)
    (point,) = histogram.data_points
    assert dict(point.attributes) == {"conduitd.pipeline": "orders"}
    assert list(point.explicit_bounds) == [1.0, 10.0, 100.0]
    assert list(point.bucket_counts) == [1, 2, 1, 1]  # per bucket, not cumulative as Prometheus'
    assert (point.count, point.sum) == (5, 561)
