"""The API server: uvicorn serving `app` in the daemon's own event loop (no thread, no signal
handlers of its own: the runtime owns SIGTERM)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import TYPE_CHECKING

from conduitd.apisettings import ApiConfig
from conduitd.errors import ConfigError, DependencyUnreachable

if TYPE_CHECKING:
    from conduitd.api.daemon import Daemon

log = logging.getLogger(__name__)


class ApiServer:
    """`start` binds and serves, `stop` closes (harmless twice)."""

    def __init__(self, runtime: Daemon, settings: ApiConfig) -> None:
        try:
            import uvicorn

            from conduitd.api.app import build_app
            from conduitd.api.tokens import Tokens
        except ImportError as exc:
            raise ConfigError(f"service.api needs the API packages: pip install 'conduitd[api]' ({exc.name} is "
                              "missing)") from None
        self.settings = settings
        tokens = Tokens.load(settings)
        if not tokens.entries:
            log.warning("service.api has no tokens (tokens_file or $CONDUITD_API_TOKENS): every API request "
                        "will be refused; make one with `conduitd token create`")
        self.app = build_app(runtime, settings, tokens)
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", server_header=False,
            proxy_headers=False, ws="none", timeout_graceful_shutdown=3))
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = settings.port

    async def start(self) -> int:
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise DependencyUnreachable(f"cannot serve the API on {host}:{port}: {reason} (set service.api.port "
                                        "to a free port, or 0 for any)") from None
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        server = self._server
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._task = asyncio.get_running_loop().create_task(server.main_loop(), name="api server")
        log.info("API and web UI on http://%s:%d (/api/v1, /)", host, self.port)
        return self.port

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        await task
        await self._server.shutdown(sockets=[self._socket] if self._socket else None)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
