"""Pagination, pure: which request asks for the first page, which for the next one, and where the
records are in a page. No I/O; the client sends what these functions say.

A `PageRequest` is what a position holds to ask for a page again: `url` None means the configured
URL with `params` (the configured parameters, the incremental filter and the pagination's own);
a `url` (a `Link: rel="next"` target) is asked as it is, query included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from conduitd.sources.rest.settings import CursorPages, LinkPages, NumberedPages, OffsetPages, Pagination

MISSING: Any = object()
"""What `value_at` returns when the path leads nowhere."""
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z*]+\s*=\s*(?:"[^"]*"|[^;,]*))*)')
_REL = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]*))', re.IGNORECASE)


class PageError(ValueError):
    """A page that does not have the shape the config says (no list at `records_path`)."""


@dataclass(frozen=True)
class PageRequest:
    url: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "params": dict(self.params)}

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> PageRequest:
        url = value.get("url")
        return PageRequest(str(url) if url is not None else None,
                           {str(k): str(v) for k, v in (value.get("params") or {}).items()})


def first_request(pagination: Pagination, params: Mapping[str, str]) -> PageRequest:
    """The first page's request: `params` (configured and incremental) plus the pagination's own."""
    own: dict[str, str] = {}
    if isinstance(pagination, OffsetPages):
        own = {pagination.offset_param: "0", pagination.limit_param: str(pagination.limit)}
    elif isinstance(pagination, NumberedPages):
        own = {pagination.page_param: str(pagination.first_page)}
        if pagination.size_param is not None:
            own[pagination.size_param] = str(pagination.size)
    elif isinstance(pagination, CursorPages) and pagination.size_param is not None:
        own = {pagination.size_param: str(pagination.size)}
    return PageRequest(None, {**params, **own})


def next_request(pagination: Pagination, request: PageRequest, body: Any, link: str | None,
                 count: int, base_url: str) -> PageRequest | None:
    """The request for the page after the one `request` got (`body`, its `Link` header, `count`
    records in it); None when that page was the last. An empty page is always the last (a server
    that keeps answering the same cursor cannot loop the source)."""
    if count == 0:
        return None
    if isinstance(pagination, CursorPages):
        token = value_at(body, pagination.cursor_path)
        if token is MISSING or token is None or token == "" or isinstance(token, dict | list | bool):
            return None
        token = str(token)
        if request.params.get(pagination.cursor_param) == token:
            return None  # the same page again: its server says there is no next one this way
        return PageRequest(request.url, {**request.params, pagination.cursor_param: token})
    if isinstance(pagination, OffsetPages):
        if count < pagination.limit:
            return None
        offset = int(request.params.get(pagination.offset_param, "0")) + count
        return PageRequest(request.url, {**request.params, pagination.offset_param: str(offset)})
    if isinstance(pagination, NumberedPages):
        if count < pagination.size:
            return None
        page = int(request.params.get(pagination.page_param, str(pagination.first_page))) + 1
        return PageRequest(request.url, {**request.params, pagination.page_param: str(page)})
    if isinstance(pagination, LinkPages):
        target = next_link(link)
        if target is None:
            return None
        return PageRequest(urljoin(request.url or base_url, target), {})
    return None


def next_link(header: str | None) -> str | None:
    """The target of `rel="next"` in a `Link` header (RFC 8288), or None."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) if rel.group(1) is not None else rel.group(2)).lower().split():
                return match.group(1).strip()
    return None


def value_at(value: Any, path: str) -> Any:
    """The value at a dotted path of a JSON value (`""`: the value itself); MISSING if none."""
    if not path:
        return value
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def records_at(body: Any, path: str) -> list[Any]:
    """The list of records of a page; PageError when there is none at `path` (null: no records)."""
    found = value_at(body, path)
    if found is None:
        return []
    if isinstance(found, list):
        return found
    where = f"at {path!r}" if path else "(the body itself, records_path is empty)"
    shown = "nothing" if found is MISSING else type(found).__name__
    raise PageError(f"the page has no list of records {where}: found {shown}")
