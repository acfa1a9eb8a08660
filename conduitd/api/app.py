"""The ASGI application: the API under /api/v1 (OpenAPI at /api/v1/openapi.json) and the web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from conduitd import __version__
from conduitd.api import problems
from conduitd.api.access import Access
from conduitd.api.routes import audit, checkpoints, dlq, operate, pipelines, schema, usage
from conduitd.api.routes import tokens as token_routes
from conduitd.api.tokens import Tokens
from conduitd.apisettings import ApiConfig

if TYPE_CHECKING:
    from conduitd.api.daemon import Daemon

PREFIX = "/api/v1"


def build_app(runtime: Daemon, settings: ApiConfig, tokens: Tokens) -> FastAPI:
    app = FastAPI(title="conduitd control plane", version=__version__, openapi_url=f"{PREFIX}/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Watch and operate the pipelines of a conduitd daemon. Every request needs a bearer "
                              "token; errors are RFC 9457 problem documents.")
    app.state.access = Access(runtime, settings, tokens)
    problems.install(app)
    for module in (pipelines, operate, dlq, checkpoints, schema, usage, audit, token_routes):
        app.include_router(module.router, prefix=PREFIX)
    from conduitd.ui import pages  # the web UI: static pages that call this API

    app.include_router(pages.router)
    pages.mount(app)
    return app
