"""OpenTelemetry traces: one trace per batch, with child spans for its stages.

    batch ── poll ── decode ── quality ── schema ── write ── commit

`quality` is the preparation off the event loop (rules, schema plan, casts, encoding), `schema`
the check of the live table and its DDL inside the transaction.

Stages are timed as they happen (`Timings`) and turned into spans when the batch is done, with
their real start and end times, so a span tree shows where a batch spent its time even though
polling and decoding happened before the batch was cut. With the SDK installed, the standard
`OTEL_*` variables apply; spans are exported over OTLP (HTTP) when `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and go nowhere otherwise.

A log line can lead to its batch's trace: inside `batch_trace(...)` (the commit of one batch)
the batch span is already open and `current_trace()` names its trace and span ids, which the
JSON log formatter adds to every line; `record_batch` called inside the block finishes that span.
A batch left without `record_batch` (its commit failed, was refused or dropped) still ends its
span, marked as an error or with `conduitd.outcome` = `not committed`, so every id a log line
carries leads to a trace.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from conduitd.core.timings import STAGES, Timings

log = logging.getLogger(__name__)

_provider: Any = None


@dataclass(frozen=True)
class TraceIds:
    """The ids of the open batch span, as OTLP and W3C `traceparent` write them (lowercase hex)."""

    trace_id: str
    span_id: str


@dataclass
class _OpenBatch:
    span: Any
    ids: TraceIds
    recorded: bool = False


_open_batch: contextvars.ContextVar[_OpenBatch | None] = contextvars.ContextVar("conduitd_batch_trace",
                                                                                default=None)


def current_trace() -> TraceIds | None:
    """The trace of the batch being committed in this context, or None (no batch, or tracing off)."""
    open_batch = _open_batch.get()
    return open_batch.ids if open_batch is not None else None


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


@contextlib.contextmanager
def batch_trace(pipeline: str, timings: Timings) -> Iterator[TraceIds | None]:
    """Open the `batch` span of one batch for the duration of its commit (from its first stage
    so far) and make its ids the `current_trace()`; yields them, or None when tracing is off."""
    if _provider is None:
        yield None
        return
    from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

    start = min((s for s, _ in timings.spans.values()), default=time.time_ns())
    span = _provider.get_tracer("conduitd").start_span("batch", start_time=start,
                                                       attributes={"conduitd.pipeline": pipeline})
    context = span.get_span_context()
    open_batch = _OpenBatch(span, TraceIds(format_trace_id(context.trace_id), format_span_id(context.span_id)))
    token = _open_batch.set(open_batch)
    try:
        yield open_batch.ids
    except BaseException as exc:
        if not open_batch.recorded:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _open_batch.reset(token)
        if not open_batch.recorded:
            span.set_attribute("conduitd.outcome", "not committed")
            span.end()


def record_batch(pipeline: str, timings: Timings, attributes: Mapping[str, Any]) -> None:
    """Emit the span tree of one committed batch (nothing when tracing is off). Inside
    `batch_trace` it completes the open `batch` span; elsewhere it makes one."""
    if _provider is None or not timings.spans:
        return
    from opentelemetry import trace

    tracer = _provider.get_tracer("conduitd")
    start = min(s for s, _ in timings.spans.values())
    end = max(e for _, e in timings.spans.values())
    open_batch = _open_batch.get()
    if open_batch is not None and not open_batch.recorded:
        open_batch.recorded = True
        root = open_batch.span
        root.set_attributes(dict(attributes))
    else:
        root = tracer.start_span("batch", start_time=start,
                                 attributes={"conduitd.pipeline": pipeline, **attributes})
    context = trace.set_span_in_context(root)
    for stage in STAGES:
        if stage in timings.spans:
            stage_start, stage_end = timings.spans[stage]
            child = tracer.start_span(stage, context=context, start_time=stage_start,
                                      attributes={"conduitd.pipeline": pipeline})
            child.end(end_time=stage_end)
    root.end(end_time=end)
