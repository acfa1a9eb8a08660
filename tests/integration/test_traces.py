"""One trace per batch: a `batch` span with poll, decode, schema, quality, write and commit children."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conduitd.configfile import load_config
from conduitd.ops import telemetry
from conduitd.runtime.supervisor import Runtime
from tests.helpers.daemon import write_config


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_provider(provider)
    yield exporter
    telemetry.use_provider(None)
    provider.shutdown()


async def test_span_tree_of_one_batch(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                      spans: InMemorySpanExporter) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(30)) + "oops\n")
    path = write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl")}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "events", "source": "s", "destination": "pg"}],
    })
    assert await Runtime(load_config(path), once=True).run() == 0
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "batch"]
    children = {s.name: s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id}
    assert set(children) == {"poll", "decode", "schema", "quality", "write", "commit"}
    assert all(s.context.trace_id == root.context.trace_id for s in children.values())
    assert root.attributes is not None
    assert root.attributes["conduitd.pipeline"] == "events"
    assert (root.attributes["conduitd.records"], root.attributes["conduitd.rows_written"],
            root.attributes["conduitd.dlq_rows"]) == (31, 30, 1)
    for child in children.values():
        assert root.start_time is not None and root.end_time is not None
        assert child.start_time is not None and child.end_time is not None
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    order = ["poll", "decode", "quality", "schema", "write", "commit"]
    starts = [children[name].start_time for name in order]
    assert starts == sorted(starts)  # type: ignore[type-var]


def test_traces_are_exported_over_otlp_when_the_endpoint_is_set(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":  # metrics arrive at /v1/metrics
                received.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data = tmp_path / "in"
        data.mkdir()
        (data / "a.jsonl").write_text('{"id": 1}\n')
        path = write_config(tmp_path / "c.yaml", {
            "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl")}],
            "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
            "resources": [{"name": "events", "source": "s", "destination": "pg"}],
        })
        from tests.helpers.daemon import conduitd

        result = conduitd("--once", "-c", str(path), env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "OTEL_SERVICE_NAME": "etl-x"})
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
        server.server_close()
    names = []
    for body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "etl-x"
            names += [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert sorted(names) == sorted(["batch", "poll", "decode", "schema", "quality", "write", "commit"])
