"""The HTTP endpoints: /livez, /readyz, /status (JSON) and /metrics (Prometheus text format).

Anyone who can reach the port can send anything: a request aiohttp cannot parse is answered 400
and logged at DEBUG in one line (a client must not be able to flood the log with tracebacks),
and no response names the Python or aiohttp version (`Server: conduitd`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conduitd.errors import DependencyUnreachable
from conduitd.ops.metrics import Metrics, PipelineStatus

log = logging.getLogger(__name__)
SERVER = "conduitd"


class _RequestLog(logging.LoggerAdapter[logging.Logger]):
    """The log aiohttp's request handler writes to. It reports every request it could not parse
    with `logger.exception` (ERROR and a traceback); those are the client's fault, so they go to
    DEBUG as one line without the request's bytes. Errors of conduitd's own handlers stay ERROR
    with their traceback."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            if self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("malformed HTTP request answered %s: %s", error.code, type(error).__name__)
            return
        super().log(level, msg, *args, **kwargs)


class HealthServer:
    """Serves the endpoints from the runtime's live status; `start` binds, `stop` closes."""

    def __init__(self, host: str, port: int, metrics: Metrics,
                 statuses: Callable[[], Sequence[PipelineStatus]]) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.statuses = statuses
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Bind and serve; return the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        # aiohttp fills in the Server header, for its own 400 answers too, from this module
        # global; it names the Python and aiohttp versions, which tell an attacker what to try.
        web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               logger=_RequestLog(logging.getLogger(f"{__name__}.requests"), {}))
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else str(exc)
            raise DependencyUnreachable(
                f"cannot serve health endpoints on {self.host}:{self.port}: {reason} "
                "(set service.health_port to a free port, or 0 for any)") from None
        self._runner = runner
        server = site._server  # the bound socket is the only place the real port of port 0 lives
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("health endpoints on http://%s:%d (/livez /readyz /status /metrics)", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _livez(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        statuses = self.statuses()
        not_ready = [s.name for s in statuses if not s.ready and s.state not in ("done",)]
        if not_ready:
            return web.Response(status=503, text="not ready: " + ", ".join(not_ready) + "\n")
        return web.Response(text="ok\n")

    async def _status(self, _: web.Request) -> web.Response:
        body: dict[str, Any] = {"pipelines": [s.as_dict() for s in self.statuses()]}
        return web.Response(body=orjson.dumps(body, default=str, option=orjson.OPT_INDENT_2),
                            content_type="application/json")

    async def _metrics(self, _: web.Request) -> web.Response:
        self.statuses()  # refreshes lag gauges
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
