"""The HTTP side of the REST source: one httpx client, a request rate limit, and retries.

Every request (retries included) waits for its turn under `requests_per_second`. A 429 or 5xx
answer, an answer that is not JSON, or no answer (connection refused, reset, timeout) is retried
up to `max_retries` times, after the `Retry-After` the server gave (seconds or an HTTP date, cut to
`max_retry_wait`) or else an exponential backoff; then DependencyUnreachable. Another 4xx is a
ConfigError (wrong URL, refused credentials). Credentials travel only in headers set here; no
message names a header, and the URL shown has no query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from conduitd.errors import ConfigError, DependencyUnreachable
from conduitd.ops.logs import quiet_url_loggers
from conduitd.retryafter import retry_after
from conduitd.sources.rest.pages import PageRequest
from conduitd.sources.rest.settings import BasicAuth, BearerAuth, HeaderAuth, RestSourceConfig

log = logging.getLogger(__name__)
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
RETRIED = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Page:
    body: Any
    link: str | None
    """The `Link` header, for `pagination: link`."""


def auth_headers(config: RestSourceConfig) -> dict[str, str]:
    auth = config.auth
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
    if isinstance(auth, HeaderAuth):
        return {auth.header: auth.value.get_secret_value()}
    return {}


def parse_json(content: bytes) -> Any:
    """A JSON body; ValueError when it is not JSON. A body with a run of 19 or more digits may hold
    an integer beyond 64 bits, which orjson would turn into a float: the standard library reads
    that one, integers exactly (fractions are doubles either way)."""
    if _LONG_DIGITS.search(content) is None:
        return orjson.loads(content)
    return json.loads(content)


class RestClient:
    """Opened lazily on the first request; `close` is harmless twice."""

    def __init__(self, config: RestSourceConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._next_turn = 0.0
        self.problem: str | None = None
        """Why the last request is being retried, or None."""
        self.shown_url = config.url.split("?", 1)[0]

    def _open(self) -> httpx.AsyncClient:
        quiet_url_loggers()
        if self._client is None:
            c = self.config
            basic = httpx.BasicAuth(c.auth.username, c.auth.password.get_secret_value()) \
                if isinstance(c.auth, BasicAuth) else None
            self._client = httpx.AsyncClient(
                headers={"Accept": "application/json", **c.headers, **auth_headers(c)}, auth=basic,
                timeout=httpx.Timeout(c.timeout), transport=self._transport, follow_redirects=True)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _turn(self, stop: asyncio.Event) -> bool:
        """Wait for this request's slot under the rate limit; False when stopped meanwhile."""
        now = time.monotonic()
        wait = self._next_turn - now
        self._next_turn = max(now, self._next_turn) + 1.0 / self.config.requests_per_second
        return wait <= 0 or not await _stopped_within(stop, wait)

    async def get(self, request: PageRequest, stop: asyncio.Event) -> Page | None:
        """The page `request` asks for; None when `stop` was set while waiting."""
        client = self._open()
        failures = 0
        while True:
            if not await self._turn(stop):
                return None
            try:
                if request.url is None:
                    answer = await client.get(self.config.url, params=dict(request.params))
                else:
                    answer = await client.get(request.url)
                body, why, wait = self._judge(answer)
            except httpx.TransportError as exc:  # no answer: the message names no header
                why, wait = f"no answer ({type(exc).__name__})", None
            else:
                if why is None:
                    self.problem = None
                    return Page(body, answer.headers.get("link"))
            failures += 1
            self.problem = f"GET {self.shown_url}: {why}"
            if failures > self.config.max_retries:
                raise DependencyUnreachable(f"{self.problem}; gave up after {failures} attempts")
            pause = min(self.config.max_retry_wait,
                        wait if wait is not None else 0.25 * 2 ** min(failures, 10) * (0.5 + random.random() / 2))
            log.info("source %r: %s; retrying in %.1fs", self.config.name, self.problem, pause)
            if await _stopped_within(stop, pause):
                return None

    def _judge(self, answer: httpx.Response) -> tuple[Any, str | None, float | None]:
        """(the JSON body, why to retry, how long the server asked to wait): why is None for a
        good page."""
        status = answer.status_code
        if status in RETRIED or status >= 500:
            return None, f"HTTP {status}", retry_after(answer.headers.get("retry-after"))
        if status >= 400:
            raise ConfigError(f"source {self.config.name!r}: GET {self.shown_url}: HTTP {status} "
                              f"{answer.reason_phrase}" + (" (check the credentials)" if status in (401, 403) else ""))
        try:
            return parse_json(answer.content), None, None
        except ValueError:
            return None, f"HTTP {status} with a body that is not JSON", None


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
