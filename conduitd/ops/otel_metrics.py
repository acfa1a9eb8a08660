"""OpenTelemetry metrics: the `/metrics` registry pushed over OTLP/HTTP under stable names.

There is one set of instruments, the Prometheus registry of `ops.metrics.Metrics`. Every export
reads that registry (`collect()`) and turns each family into an OTel metric named by `NAMES`, so
the OTLP export and a `/metrics` scrape taken at the same moment carry the same values:

- counters become cumulative monotonic sums (start time: the child's `_created` sample),
- gauges become gauges,
- histograms become cumulative explicit-bucket histograms (Prometheus' cumulative `le` buckets
  turned into per-bucket counts; min and max are unknown and left unset),
- every label `x` becomes the attribute `conduitd.x` (`unit` of `conduitd_source_lag` becomes
  `conduitd.lag_unit`), as the batch spans carry `conduitd.pipeline`.

A family missing from `NAMES` is still exported, as `conduitd.` + the rest of its Prometheus
name, and `tests/unit/test_otel_names.py` fails until it is named here and in the README.

Active only when `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set
(unless `OTEL_SDK_DISABLED` is `true` or `OTEL_METRICS_EXPORTER` is `none`, which keeps the
traces on); `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000),
`OTEL_METRIC_EXPORT_TIMEOUT` (ms, default 30000), `OTEL_SERVICE_NAME` (default `conduitd`), the
exporter's headers, compression and certificate variables apply. An export runs on a thread of
its own (the exporter's HTTP client blocks), and once more when the exporter stops, so a
`--once` run delivers its final counts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as Family

log = logging.getLogger(__name__)


class OtelName(NamedTuple):
    """The OTel name and UCUM unit a Prometheus family is exported under."""

    name: str
    unit: str


NAMES: Mapping[str, OtelName] = {
    "conduitd_rows_read": OtelName("conduitd.rows_read", "{record}"),
    "conduitd_rows_written": OtelName("conduitd.rows_written", "{row}"),
    "conduitd_dlq_rows": OtelName("conduitd.dlq_rows", "{row}"),
    "conduitd_batches": OtelName("conduitd.batches", "{batch}"),
    "conduitd_checkpoint_conflicts": OtelName("conduitd.checkpoint_conflicts", "{batch}"),
    "conduitd_quality_violations": OtelName("conduitd.quality_violations", "{row}"),
    "conduitd_retries": OtelName("conduitd.retries", "{retry}"),
    "conduitd_commit_seconds": OtelName("conduitd.commit.duration", "s"),
    "conduitd_batch_rows": OtelName("conduitd.batch.records", "{record}"),
    "conduitd_pipeline_ready": OtelName("conduitd.pipeline.ready", "1"),
    "conduitd_last_commit_timestamp_seconds": OtelName("conduitd.last_commit.timestamp", "s"),
    "conduitd_source_problem": OtelName("conduitd.source.problem", "1"),
    "conduitd_manifest_write_errors": OtelName("conduitd.manifest.write_errors", "{record}"),
    "conduitd_source_lag": OtelName("conduitd.source.lag", "1"),
    "conduitd_dbt_runs": OtelName("conduitd.dbt.runs", "{run}"),
    "conduitd_dbt_failing": OtelName("conduitd.dbt.failing", "1"),
    "conduitd_alert_deliveries": OtelName("conduitd.alert.deliveries", "{alert}"),
}
"""Prometheus family name (as `collect()` names it: counters without `_total`) -> OTel name."""

_ATTRIBUTES = {"unit": "conduitd.lag_unit"}


def otel_name(family: str) -> OtelName:
    """The stable name of a family; an unnamed one gets a derived name (and fails the name test)."""
    return NAMES.get(family) or OtelName("conduitd." + family.removeprefix("conduitd_"), "1")


def attribute(label: str) -> str:
    """The OTel attribute a Prometheus label is exported as."""
    return _ATTRIBUTES.get(label, "conduitd." + label)


def _key(labels: Mapping[str, str], drop: str = "") -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def to_metrics_data(families: Iterable[Family], resource: Any, now_ns: int, process_start_ns: int) -> Any:
    """Convert collected Prometheus families to an SDK `MetricsData` (pure; needs the SDK)."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        Metric,
        MetricsData,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    cumulative = AggregationTemporality.CUMULATIVE
    metrics = []
    for family in families:
        named = otel_name(family.name)
        data: Any
        if family.type == "counter":
            data = Sum(_numbers(family, now_ns, process_start_ns), cumulative, is_monotonic=True)
        elif family.type == "gauge":
            data = Gauge(_numbers(family, now_ns, process_start_ns))
        elif family.type == "histogram":
            data = Histogram(_histograms(family, now_ns, process_start_ns), cumulative)
        else:
            continue  # conduitd registers no summaries or info metrics
        if data.data_points:
            metrics.append(Metric(named.name, family.documentation, named.unit, data))
    scope = ScopeMetrics(InstrumentationScope("conduitd"), metrics, schema_url="")
    return MetricsData([ResourceMetrics(resource, [scope], schema_url="")])


def _attributes(key: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {attribute(k): v for k, v in key}


def _numbers(family: Family, now_ns: int, process_start_ns: int) -> list[Any]:
    from opentelemetry.sdk.metrics.export import NumberDataPoint

    values: dict[tuple[tuple[str, str], ...], float] = {}
    created: dict[tuple[tuple[str, str], ...], int] = {}
    for sample in family.samples:
        key = _key(sample.labels)
        if sample.name.endswith("_created"):
            created[key] = int(sample.value * 1e9)
        elif sample.name in (family.name, family.name + "_total"):
            values[key] = sample.value
    return [NumberDataPoint(_attributes(key), created.get(key, process_start_ns), now_ns, _number(value))
            for key, value in values.items()]


def _number(value: float) -> int | float:
    """Whole values as ints (counts), the rest as doubles."""
    return int(value) if value.is_integer() else value


def _histograms(family: Family, now_ns: int, process_start_ns: int) -> list[Any]:
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    created: dict[tuple[tuple[str, str], ...], int] = {}
    for sample in family.samples:
        suffix = sample.name.removeprefix(family.name)
        key = _key(sample.labels, drop="le")
        if suffix == "_bucket":
            buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
        elif suffix == "_sum":
            sums[key] = sample.value
        elif suffix == "_count":
            counts[key] = sample.value
        elif suffix == "_created":
            created[key] = int(sample.value * 1e9)
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        bounds = [le for le, _ in cumulative if le != float("inf")]
        per_bucket, below = [], 0.0
        for _, count in cumulative:
            per_bucket.append(int(count - below))
            below = count
        points.append(HistogramDataPoint(
            _attributes(key), created.get(key, process_start_ns), now_ns, int(counts.get(key, below)),
            sums.get(key, 0.0), per_bucket, bounds, min=None, max=None))  # type: ignore[arg-type]
    return points


class OtlpMetrics:
    """Exports a registry every `interval` seconds from a thread of its own until `stop()`, which
    exports once more and waits for the thread. Starting twice raises; stopping twice is harmless."""

    def __init__(self, registry: CollectorRegistry, exporter: Any, resource: Any, *, interval: float,
                 timeout: float) -> None:
        self.registry = registry
        self.exporter = exporter
        self.resource = resource
        self.interval = interval
        self.timeout = timeout
        self.started_ns = time.time_ns()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def collect(self) -> Any:
        """The registry as `MetricsData`, now."""
        return to_metrics_data(self.registry.collect(), self.resource, time.time_ns(), self.started_ns)

    def export(self) -> bool:
        """Export once; False (and a warning) when the collector refused it or was unreachable."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            result = self.exporter.export(self.collect(), timeout_millis=self.timeout * 1000)
        except Exception:  # an export never stops the daemon; the next one sends the totals again
            log.warning("OTLP metrics export failed", exc_info=True)
            return False
        if result is not MetricExportResult.SUCCESS:
            log.warning("OTLP metrics export was not accepted; the next one sends the totals again")
            return False
        return True

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the OTLP metrics exporter is already started")
        self._thread = threading.Thread(target=self._loop, name="otlp-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self.export()

    def stop(self) -> None:
        """Export the final values, then shut the exporter down (blocks up to the export timeout)."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.export()
        self.exporter.shutdown()


def start_from_environment(registry: CollectorRegistry) -> OtlpMetrics | None:
    """Start exporting `registry` when the `OTEL_*` environment asks for it; None otherwise."""
    endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if (not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
            or os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning("an OTLP endpoint is set but the OpenTelemetry SDK is not installed "
                    "(pip install 'conduitd[otel]'): no metrics are exported")
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "conduitd"})
    exporter = OtlpMetrics(registry, OTLPMetricExporter(), resource,
                           interval=_millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000) / 1000,
                           timeout=_millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000) / 1000)
    exporter.start()
    log.info("exporting metrics over OTLP to %s every %.0fs", endpoint, exporter.interval)
    return exporter


def _millis(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds; using %d", variable, raw, default)
        return default
    return value if value > 0 else default
