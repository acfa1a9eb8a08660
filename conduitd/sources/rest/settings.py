"""The `type: rest` source's config section. Imports no HTTP library.

    sources:
      - name: orders_api
        type: rest
        url: https://api.example.com/v1/orders
        records_path: data                  # where the records are in a page ("" : the page is a list)
        pagination: {type: cursor, cursor_path: meta.next, cursor_param: cursor}
        incremental: {field: updated_at, param: updated_since}
        auth: {type: bearer, token: {from: env, name: ORDERS_TOKEN}}
        requests_per_second: 5

Secrets (`token`, `password`, `value`) are text or `{from: env|file|<provider>, ...}`; they are
sent only in request headers and are masked everywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from conduitd.config import SourceConfig
from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.core.redact import remember
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText


class CursorPages(StrictModel):
    """The next page is asked with a token the page itself gives; no token: the last page."""

    type: Literal["cursor"]
    cursor_path: NonEmpty = "next_cursor"
    """Dotted path of the next page's token in the page's body (`meta.next_cursor`)."""
    cursor_param: NonEmpty = "cursor"
    """Query parameter that carries the token."""
    size_param: NonEmpty | None = None
    size: int = Field(100, gt=0)


class OffsetPages(StrictModel):
    """`offset` and `limit` parameters; a page with fewer than `limit` records is the last."""

    type: Literal["offset"]
    offset_param: NonEmpty = "offset"
    limit_param: NonEmpty = "limit"
    limit: int = Field(100, gt=0)


class NumberedPages(StrictModel):
    """Page numbers from `first_page`; a page with fewer than `size` records is the last."""

    type: Literal["page"]
    page_param: NonEmpty = "page"
    size_param: NonEmpty | None = "per_page"
    size: int = Field(100, gt=0)
    first_page: int = Field(1, ge=0)


class LinkPages(StrictModel):
    """The next page's URL is the `Link` header's `rel="next"` (RFC 8288, as GitHub's API)."""

    type: Literal["link"]


class OnePage(StrictModel):
    """The endpoint answers everything in one page."""

    type: Literal["none"]


Pagination = CursorPages | OffsetPages | NumberedPages | LinkPages | OnePage
"""Told apart by `type` (a plain union: StrictModel's checks run on every field, `type` too)."""


class Incremental(StrictModel):
    """Read only records whose `field` is at or after the committed value. The endpoint must return
    them in ascending order of `field` (ties in a stable order), filtered by `param` inclusively
    (`>=`): records at the committed value that were already committed are skipped by count."""

    field: NonEmpty
    """Dotted path of the field in each record (a number, or text such as an ISO-8601 time)."""
    param: NonEmpty | None = None
    """Query parameter carrying the committed value (none: the source filters what it reads)."""
    start: str | int | float | None = None
    """The value to start from when nothing is committed (none: every record)."""


class BearerAuth(StrictModel):
    type: Literal["bearer"]
    token: SecretText


class BasicAuth(StrictModel):
    type: Literal["basic"]
    username: NonEmpty
    password: SecretText


class HeaderAuth(StrictModel):
    """An API key in a header of its own (`X-API-Key: ...`)."""

    type: Literal["api_key"]
    header: NonEmpty = "X-API-Key"
    value: SecretText


Auth = BearerAuth | BasicAuth | HeaderAuth


class RestSourceConfig(SourceConfig):
    """A paginated JSON endpoint read page by page; see the module docstring."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["rest"]
    url: NonEmpty
    """The endpoint (http or https); the first page is asked of it with `params`."""
    params: dict[str, str] = Field(default_factory=dict)
    """Query parameters sent with every request."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every request (secrets belong in `auth`)."""
    records_path: str = ""
    """Dotted path of the list of records in a page's JSON body; empty: the body is the list."""
    pagination: Pagination = OnePage(type="none")
    incremental: Incremental | None = None
    auth: Auth | None = None
    requests_per_second: float = Field(10.0, gt=0, le=10_000)
    """Most requests a second (all pages and retries together)."""
    max_retries: int = Field(8, ge=0, le=100)
    """Retries of one request answered 429 or 5xx, or not answered; then the pipeline fails (a
    daemon's pipeline restarts it by its retry policy)."""
    max_retry_wait: PositiveDuration = 60.0
    """Longest pause before a retry (a longer `Retry-After` is cut to this)."""
    timeout: PositiveDuration = 30.0
    """Per request: connect, read and write each."""
    poll_interval: PositiveDuration = 60.0
    """In daemon mode, how long after the last page the endpoint is read again."""

    @model_validator(mode="after")
    def _check(self) -> RestSourceConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("'url' must start with http:// or https://")
        lowered = {h.lower() for h in self.headers}
        if lowered & {"authorization", "cookie"}:
            raise ValueError("put credentials in 'auth' (so they are masked), not in 'headers'")
        if self.auth is not None:
            secret = {"bearer": "token", "basic": "password", "api_key": "value"}[self.auth.type]
            remember([getattr(self.auth, secret).get_secret_value()])
        return self
