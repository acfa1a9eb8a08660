"""The REST source: one partition (the endpoint's URL), read page by page.

Positions: without `incremental`, `{"request": <the page's request>, "skip": n}`, the page holding
the last record handed over and how many of its records were; reading resumes by asking that page
again and skipping `n` (so a page the server grew since is read on). With `incremental`, the
`Sieve`'s `{"value": v, "ties": n}`: every pass starts at the first page, filtered from `v`.

A pass reads from the position to the last page. Under --once one pass is the run; a daemon
makes a pass every `poll_interval`, from where the last one ended. After `resync` (another owner
committed) the next pass starts from the committed position, under a new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson

from conduitd.core.records import Chunk, Position
from conduitd.core.timings import Timings
from conduitd.errors import ConfigError
from conduitd.sources.base import Checkpoints
from conduitd.sources.rest.client import RestClient
from conduitd.sources.rest.incremental import Sieve
from conduitd.sources.rest.pages import PageError, PageRequest, first_request, next_request, records_at
from conduitd.sources.rest.rows import Read, cut, decode
from conduitd.sources.rest.settings import RestSourceConfig

log = logging.getLogger(__name__)


class RestSource:
    """See the module docstring."""

    def __init__(self, config: RestSourceConfig, *, pipeline: str, once: bool, max_rows: int,
                 client: RestClient | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.once = once
        self.max_rows = max(1, max_rows)
        self.client = client or RestClient(config)
        self.epoch = 0
        self.partition = config.url
        self._extra = {"pipeline": pipeline}

    def lag(self) -> dict[str, dict[str, float]]:
        return {}

    def problem(self) -> str | None:
        why = self.client.problem
        return None if why is None else f"source {self.config.name!r}: {why}"

    async def resync(self) -> bool:
        self.epoch += 1
        return True

    async def acknowledge(self, positions: Mapping[str, Position]) -> None:
        return None

    async def close(self) -> None:
        await self.client.close()

    async def chunks(self, checkpoints: Checkpoints, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        position = (await checkpoints.committed()).get(self.partition)
        while not stop.is_set():
            epoch = self.epoch
            async for chunk in self._pass(position, epoch, stop):
                yield chunk
                position = chunk.end
                if self.epoch != epoch:
                    break
            if self.epoch != epoch:
                position = (await checkpoints.committed()).get(self.partition)
                continue
            if self.once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval)

    async def _pass(self, position: Position, epoch: int, stop: asyncio.Event) -> AsyncIterator[Chunk]:
        """Chunks after `position` up to the last page (fewer when stopped)."""
        c = self.config
        sieve = Sieve(c.incremental.field, position, c.incremental.start) if c.incremental else None
        request, skip = self._start(position, sieve)
        start = position
        while not stop.is_set():
            timings = Timings()
            with timings.stage("poll"):
                page = await self.client.get(request, stop)
            if page is None:
                return
            try:
                records = records_at(page.body, c.records_path)
            except PageError as exc:
                raise ConfigError(f"source {c.name!r}: GET {self.client.shown_url}: {exc}") from None
            reads = list(self._reads(records, request, skip, sieve))
            with timings.stage("decode"):
                for group in cut(reads, self.max_rows):
                    piece = decode(group, self.partition)
                    yield Chunk(self.partition, start, piece.end, piece.rows, piece.rejects, nbytes=piece.nbytes,
                                epoch=epoch, timings=timings)
                    start = piece.end
            following = next_request(c.pagination, request, page.body, page.link, len(records), c.url)
            if following is None:
                return
            request, skip = following, 0

    def _start(self, position: Position, sieve: Sieve | None) -> tuple[PageRequest, int]:
        c = self.config
        if sieve is None:
            if isinstance(position, dict) and isinstance(position.get("request"), dict):
                return PageRequest.from_json(position["request"]), int(position.get("skip", 0))
            return first_request(c.pagination, c.params), 0
        params = dict(c.params)
        if c.incremental is not None and c.incremental.param is not None and sieve.filter_value is not None:
            params[c.incremental.param] = _as_param(sieve.filter_value)
        return first_request(c.pagination, params), 0

    def _reads(self, records: list[Any], request: PageRequest, skip: int, sieve: Sieve | None) -> Iterator[Read]:
        page = request.to_json()
        for index in range(skip, len(records)):
            record = records[index]
            if sieve is None:
                yield Read(record, {"request": page, "skip": index + 1})
                continue
            reason = sieve.admit(record)
            if reason == "":
                continue
            yield Read(record, sieve.position, reason)


def _as_param(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
