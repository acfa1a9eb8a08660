"""Log formatting: JSON lines for machines, plain text for people. Only the CLI calls `configure`.

Both formatters pass everything they print (message, `extra` fields, exception text) through
`redact`, so no log line can carry a secret whatever a caller put in it.

A JSON line logged while a batch is committed under `telemetry.batch_trace` (tracing on) carries
`trace_id` and `span_id`: the ids of that batch's `batch` span, so the line leads to its trace.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from conduitd.core.redact import redact, redact_value
from conduitd.ops.telemetry import current_trace

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, every `extra` field, and the
    `trace_id` and `span_id` of the batch being committed, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        ids = current_trace()
        if ids is not None:
            entry.setdefault("trace_id", ids.trace_id)
            entry.setdefault("span_id", ids.span_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Redacted before serialising: a secret holding a quote or a backslash is escaped by JSON.
        safe = redact_value(orjson.loads(orjson.dumps(entry, default=str)))
        return orjson.dumps(safe).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_url_loggers()


URL_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every request's full URL at INFO: a webhook or Slack URL is itself a
secret, and a REST source's URL may carry one."""


def quiet_url_loggers() -> None:
    """Keep the URL-logging libraries at WARNING or above, whatever the root level (the CLI
    does this when it configures logging; the components that send HTTP requests do it too, for
    processes that configure logging themselves)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)

