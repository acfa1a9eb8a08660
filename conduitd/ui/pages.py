"""The web UI's routes: one server-rendered HTML shell per page and the static files the shells
load (scripts, style sheet).

A shell is the layout (`shells/layout.html`: header, navigation, sign-in form) around the page's
own markup (`shells/<page>.html`: headings, empty tables, forms). Shells hold no data and need no
token: each page's script (`static/<page>.js`) asks for the token once (kept in the tab's
sessionStorage), sends it as a bearer header to the API under /api/v1 and fills the page. Nothing
is loaded from elsewhere (no CDN); a Content-Security-Policy allows this server's files only.
"""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path
from string import Template
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent
STATIC = HERE / "static"
SHELLS = HERE / "shells"
router = APIRouter(include_in_schema=False)

_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _shell(name: str) -> Template:
    return Template((SHELLS / f"{name}.html").read_text(encoding="utf-8"))


def render(page: str, title: str, pipeline: str = "") -> HTMLResponse:
    """The page's shell inside the layout; `pipeline` (a path parameter) is escaped wherever it
    appears: as text, in attributes, and URL-quoted in links."""
    values = {"page": page, "title": escape(title), "pipeline": escape(pipeline),
              "pipeline_url": escape(quote(pipeline, safe=""))}
    body = _shell(page).safe_substitute(values)
    html = _shell("layout").substitute(values, body=body)
    return HTMLResponse(html, headers=_HEADERS)


@router.get("/", response_class=HTMLResponse)
async def pipelines_page() -> HTMLResponse:
    return render("pipelines", "Pipelines")


@router.get("/pipelines/{name}", response_class=HTMLResponse)
async def pipeline_page(name: str) -> HTMLResponse:
    return render("pipeline", f"Pipeline {name}", name)


@router.get("/pipelines/{name}/dlq", response_class=HTMLResponse)
async def dlq_page(name: str) -> HTMLResponse:
    return render("dlq", f"DLQ of {name}", name)


@router.get("/pipelines/{name}/schema", response_class=HTMLResponse)
async def schema_page(name: str) -> HTMLResponse:
    return render("schema", f"Schema drift of {name}", name)


@router.get("/usage", response_class=HTMLResponse)
async def usage_page() -> HTMLResponse:
    return render("usage", "Usage")


@router.get("/audit", response_class=HTMLResponse)
async def audit_page() -> HTMLResponse:
    return render("audit", "Audit log")


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
