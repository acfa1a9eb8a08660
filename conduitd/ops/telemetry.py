"""OpenTelemetry traces: one trace per batch, with child spans for its stages.

    batch ── poll ── decode ── quality ── schema ── write ── commit

`quality` is the preparation off the event loop (rules, schema plan, casts, encoding), `schema`
the check of the live table and its DDL inside the transaction.

Stages are timed as they happen (`Timings`) and turned into spans when the batch is done, with
their real start and end times, so a span tree shows where a batch spent its time even though
polling and decoding happened before the batch was cut. With the SDK installed, the standard
`OTEL_*` variables apply; spans are exported over OTLP (HTTP) when `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and go nowhere otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from conduitd.core.timings import STAGES, Timings

log = logging.getLogger(__name__)

_provider: Any = None


def configure_from_environment() -> None:
    """Install the SDK's tracer provider with an OTLP exporter when the environment asks for one."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
                    "(pip install 'conduitd[otel]'): no traces are exported")
        return
    service = os.environ.get("OTEL_SERVICE_NAME", "conduitd")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    log.info("exporting traces over OTLP to %s", endpoint)


def use_provider(provider: Any) -> None:
    """Send batch traces to this TracerProvider (tests pass one with an in-memory exporter)."""
    global _provider
    _provider = provider


def shutdown() -> None:
    """Flush and stop the exporter (at process exit)."""
    if _provider is not None and hasattr(_provider, "shutdown"):
        _provider.shutdown()


def record_batch(pipeline: str, timings: Timings, attributes: Mapping[str, Any]) -> None:
    """Emit the span tree of one committed batch (nothing when tracing is off)."""
    if _provider is None or not timings.spans:
        return
    from opentelemetry import trace

    tracer = _provider.get_tracer("conduitd")
    start = min(s for s, _ in timings.spans.values())
    end = max(e for _, e in timings.spans.values())
    root = tracer.start_span("batch", start_time=start, attributes={"conduitd.pipeline": pipeline, **attributes})
    context = trace.set_span_in_context(root)
    for stage in STAGES:
        if stage in timings.spans:
            stage_start, stage_end = timings.spans[stage]
            child = tracer.start_span(stage, context=context, start_time=stage_start,
                                      attributes={"conduitd.pipeline": pipeline})
            child.end(end_time=stage_end)
    root.end(end_time=end)
