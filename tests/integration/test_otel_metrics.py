"""OpenTelemetry over OTLP/HTTP against a fake collector: a local HTTP server that decodes the
protobuf requests with `opentelemetry-proto`. Metrics of a real file -> SQLite run arrive under the
frozen names with the values /metrics shows; a JSON log line logged while a batch commits carries
the trace and span ids of the batch span the collector receives."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conduitd.configfile import load_config
from conduitd.core.timings import Timings
from conduitd.ops import otel_metrics, telemetry
from conduitd.ops.logs import JsonFormatter
from conduitd.runtime.supervisor import Runtime
from tests.unit.test_otel_names import FROZEN

ROOT = Path(__file__).resolve().parents[2]
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_SDK_DISABLED",
                  "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_METRICS_EXPORTER")


@dataclass
class Collector:
    """What the fake collector received: (path, decoded request) in arrival order."""

    url: str
    received: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, path: str) -> list[Any]:
        with self.lock:
            return [request for at, request in self.received if at == path]


@pytest.fixture
def collector() -> Iterator[Collector]:
    box: list[Collector] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer: Any
            if self.path.endswith("/traces"):
                request: Any = ExportTraceServiceRequest.FromString(body)
                answer = ExportTraceServiceResponse()
            else:
                request = ExportMetricsServiceRequest.FromString(body)
                answer = ExportMetricsServiceResponse()
            with box[0].lock:
                box[0].received.append((self.path, request))
            payload = answer.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Collector(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def attributes(pairs: Any) -> dict[str, str]:
    return {pair.key: pair.value.string_value for pair in pairs}


def exported_points(request: ExportMetricsServiceRequest) -> tuple[dict[tuple[Any, ...], float], dict[str, Any]]:
    """Flatten an OTLP request to {(name, attributes, field): value} and {name: metric}."""
    points: dict[tuple[Any, ...], float] = {}
    metrics: dict[str, Any] = {}
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                metrics[metric.name] = metric
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points:
                    key = (metric.name, frozenset(attributes(point.attributes).items()))
                    if kind == "histogram":
                        points[(*key, "count")] = point.count
                        points[(*key, "sum")] = point.sum
                        below = 0
                        for bound, count in zip([*point.explicit_bounds, float("inf")], point.bucket_counts,
                                                strict=True):
                            below += count
                            points[(*key, f"le={bound}")] = below
                    else:
                        number = point.WhichOneof("value")
                        points[(*key, "value")] = getattr(point, number)
    return points, metrics


def scraped_points(text: str) -> dict[tuple[Any, ...], float]:
    """The same flattening of the Prometheus text /metrics serves, through the frozen names."""
    points: dict[tuple[Any, ...], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue  # creation times: the OTel points' start times, not points of their own
        name = otel_metrics.otel_name(family.name).name  # frozen names: tests/unit/test_otel_names.py
        for sample in family.samples:
            labels = {("conduitd.lag_unit" if k == "unit" else f"conduitd.{k}"): v
                      for k, v in sample.labels.items() if k != "le"}
            key = (name, frozenset(labels.items()))
            suffix = sample.name.removeprefix(family.name)
            if suffix == "_bucket":
                points[(*key, f"le={float(sample.labels['le'])}")] = sample.value
            elif suffix in ("_count", "_sum"):
                points[(*key, suffix[1:])] = sample.value
            elif suffix in ("", "_total"):
                points[(*key, "value")] = sample.value
    return points


async def test_a_once_run_exports_the_values_of_metrics_under_the_frozen_names(
        tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # only the export at stop
    monkeypatch.setenv("OTEL_SERVICE_NAME", "conduitd-otel-test")
    monkeypatch.setenv("CONDUITD_QUICKSTART_DB", str(tmp_path / "quickstart.db"))
    monkeypatch.setenv("CONDUITD_SAMPLE_DIR", str(ROOT / "config" / "sample"))
    monkeypatch.setenv("CONDUITD_QUICKSTART_MANIFEST", str(tmp_path / "manifest.jsonl"))
    runtime = Runtime(load_config(ROOT / "config" / "quickstart.yaml"), once=True)
    assert await runtime.run() == 0
    scraped = scraped_points(generate_latest(runtime.metrics.registry).decode())  # the body of /metrics

    (request,) = collector.requests("/v1/metrics")  # the final export, when the runtime stopped
    (resource,) = request.resource_metrics
    assert attributes(resource.resource.attributes)["service.name"] == "conduitd-otel-test"
    exported, metrics = exported_points(request)
    assert exported == scraped
    frozen = {name: unit for name, unit in FROZEN.values()}
    assert set(metrics) <= set(frozen)
    assert {"conduitd.rows_read", "conduitd.rows_written", "conduitd.dlq_rows", "conduitd.batches",
            "conduitd.commit.duration", "conduitd.batch.records", "conduitd.source.lag",
            "conduitd.pipeline.ready", "conduitd.last_commit.timestamp",
            "conduitd.manifest.write_errors"} <= set(metrics)
    assert all(metric.unit == frozen[name] for name, metric in metrics.items())
    written = metrics["conduitd.rows_written"].sum
    assert written.is_monotonic and written.aggregation_temporality == 2  # cumulative
    db = sqlite3.connect(tmp_path / "quickstart.db")
    try:
        rows = db.execute("SELECT count(*) FROM orders").fetchone()[0]
        dlq = db.execute("SELECT count(*) FROM orders_dlq").fetchone()[0]
    finally:
        db.close()
    pipeline = frozenset({("conduitd.pipeline", "orders")})
    assert exported[("conduitd.rows_written", pipeline, "value")] == rows > 0
    dlq_points = {k: v for k, v in exported.items() if k[0] == "conduitd.dlq_rows"}
    assert sum(dlq_points.values()) == dlq > 0


def test_the_metrics_endpoint_variable_wins_and_exports_repeat_every_interval(
        collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/nowhere")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{collector.url}/custom/metrics")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "20")
    registry = CollectorRegistry()
    rows = Counter("conduitd_rows_written", "Rows.", ["pipeline"], registry=registry)
    rows.labels("p").inc(3)
    exporter = otel_metrics.start_from_environment(registry)
    assert exporter is not None
    try:
        wait_for(lambda: len(collector.requests("/custom/metrics")) >= 2, "two periodic exports")
        rows.labels("p").inc(4)
    finally:
        exporter.stop()
        exporter.stop()  # harmless
    last, _ = exported_points(collector.requests("/custom/metrics")[-1])
    assert last == {("conduitd.rows_written", frozenset({("conduitd.pipeline", "p")}), "value"): 7}


@pytest.mark.parametrize("environment", [{}, {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"},
                                         {"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}])
def test_no_export_without_an_endpoint_or_when_disabled(environment: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert otel_metrics.start_from_environment(CollectorRegistry()) is None


@pytest.fixture
def traces_to(collector: Collector) -> Iterator[Collector]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
    telemetry.use_provider(provider)
    try:
        yield collector
    finally:
        telemetry.use_provider(None)
        provider.shutdown()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def spans_named(collector: Collector, name: str) -> list[Any]:
    return [span for request in collector.requests("/v1/traces") for resource in request.resource_spans
            for scope in resource.scope_spans for span in scope.spans if span.name == name]


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("conduitd.test_otel")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_a_log_line_inside_a_batch_carries_the_trace_of_its_exported_batch_span(
        traces_to: Collector, json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    timings = Timings()
    with timings.stage("poll"):
        pass
    logger.info("before the batch")
    with telemetry.batch_trace("orders", timings) as ids:
        with timings.stage("write"):
            logger.warning("quality rule %r (warn)", "amount_range", extra={"pipeline": "orders"})
        telemetry.record_batch("orders", timings, {"conduitd.rows_written": 3})
    logger.info("after the batch")
    before, inside, after = json_lines(stream)
    assert "trace_id" not in before and "trace_id" not in after
    assert ids is not None and (inside["trace_id"], inside["span_id"]) == (ids.trace_id, ids.span_id)
    (batch,) = spans_named(traces_to, "batch")
    assert (batch.trace_id.hex(), batch.span_id.hex()) == (inside["trace_id"], inside["span_id"])
    assert attributes(batch.attributes)["conduitd.pipeline"] == "orders"
    children = {span.name: span for name in ("poll", "write") for span in spans_named(traces_to, name)}
    assert set(children) == {"poll", "write"}
    assert all(span.trace_id == batch.trace_id and span.parent_span_id == batch.span_id
               for span in children.values())


def test_a_failed_commit_still_exports_the_span_its_log_lines_name(
        traces_to: Collector, json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    with pytest.raises(ConnectionError), telemetry.batch_trace("orders", Timings()):
        logger.warning("commit failed, retrying")
        raise ConnectionError("destination away")
    (line,) = json_lines(stream)
    (batch,) = spans_named(traces_to, "batch")
    assert (batch.trace_id.hex(), batch.span_id.hex()) == (line["trace_id"], line["span_id"])
    assert batch.status.code == 2  # STATUS_CODE_ERROR
    assert "destination away" in batch.status.message


def test_without_tracing_a_batch_adds_no_ids(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    telemetry.use_provider(None)
    with telemetry.batch_trace("orders", Timings()) as ids:
        logger.info("inside")
    assert ids is None and "trace_id" not in json_lines(stream)[0]


async def test_a_pipeline_log_line_logged_while_its_batch_commits_leads_to_the_batch_trace(
        tmp_path: Path, traces_to: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUITD_QUICKSTART_DB", str(tmp_path / "quickstart.db"))
    monkeypatch.setenv("CONDUITD_SAMPLE_DIR", str(ROOT / "config" / "sample"))
    monkeypatch.setenv("CONDUITD_QUICKSTART_MANIFEST", str(tmp_path / "manifest.jsonl"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("conduitd")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        runtime = Runtime(load_config(ROOT / "config" / "quickstart.yaml"), once=True)
        assert await runtime.run() == 0
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (created,) = [line for line in lines if line["message"].startswith("schema change applied")]
    batches = {span.span_id.hex(): span for span in spans_named(traces_to, "batch")}
    assert created["span_id"] in batches
    assert batches[created["span_id"]].trace_id.hex() == created["trace_id"]
    started = [line for line in lines if " started: " in line["message"]]
    assert started and all("trace_id" not in line for line in started)  # not inside a batch
