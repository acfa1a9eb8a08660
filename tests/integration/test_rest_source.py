"""The REST source (issue 15, part 3) against a local aiohttp server: 100,000 records over pages
with 429s (Retry-After) and 500s, a `--once` run SIGKILLed mid-way and run again, every record
exactly once in SQLite row by row; each pagination style; auth headers arrive and the secret is
never in logs or errors; incremental by a field resumes from the committed value; the connector
test kit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conduitd.core.records import Chunk, Position, position_text
from conduitd.errors import ConfigError
from conduitd.sources.base import FixedCheckpoints, Source
from conduitd.sources.rest.settings import RestSourceConfig
from conduitd.sources.rest.source import RestSource
from conduitd.testing.contract import SourceContract
from tests.helpers.daemon import conduitd, start_conduitd, start_daemon, stop_daemon, tail, write_config

TOKEN = "s3cr3t-rest-token-7f1d"


class Api:
    """A JSON API over `records` in a thread of its own. Styles (the path): /cursor (body
    {"data": [...], "meta": {"next": token}}), /offset ({"items": [...]}), /page (a list), /link
    (a list, `Link: <...>; rel="next"`). `since` filters on `updated` (inclusive). Every request
    is noted; `faults` makes the n-th request of each style fail (429 with Retry-After, or 500)."""

    def __init__(self, records: list[dict[str, Any]], *, token: str | None = TOKEN) -> None:
        self.records = records
        self.auth: tuple[str, str] | None = ("Authorization", f"Bearer {token}") if token else None
        """The header (name, value) a request must carry, or None."""
        self.seen: list[dict[str, Any]] = []
        self.faults: Callable[[int], tuple[int, str | None] | None] = lambda n: None
        self.bad_page: int | None = None
        """Offset whose page holds a non-object record (a string) in place of its first record."""
        self._count = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        assert started.wait(10), "the API server did not start"

    def url(self, style: str) -> str:
        return f"http://127.0.0.1:{self.port}/{style}"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/{style}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def close(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._count += 1
        style, q = request.match_info["style"], request.query
        note = {"n": self._count, "at": time.monotonic(), "style": style, "query": dict(q),
                "headers": {k.lower(): v for k, v in request.headers.items()}}
        self.seen.append(note)
        if self.auth is not None and request.headers.get(self.auth[0]) != self.auth[1]:
            note["status"] = 401
            return web.json_response({"error": "unauthorized"}, status=401)
        fault = self.faults(self._count)
        if fault is not None:
            note["status"], after = fault
            return web.Response(status=fault[0], headers={"Retry-After": after} if after else {}, text="busy")
        note["status"] = 200
        selected = self.records
        if "since" in q:
            since = int(q["since"])
            selected = sorted((r for r in self.records if r["updated"] >= since), key=lambda r: r["updated"])
        if style == "cursor":
            start, size = int(q.get("cursor", "0")), int(q.get("limit", "1000"))
            rows = self._page(selected, start, size)
            more = {"next": str(start + size)} if start + size < len(selected) else {"next": None}
            return web.json_response({"data": rows, "meta": more})
        if style == "offset":
            start, size = int(q["offset"]), int(q["limit"])
            return web.json_response({"items": self._page(selected, start, size)})
        if style == "page":
            size = int(q["per_page"])
            return web.json_response(self._page(selected, (int(q["page"]) - 1) * size, size))
        start, size = int(q.get("start", "0")), 250
        headers = {}
        if start + size < len(selected):
            headers["Link"] = f'</link?start={start + size}>; rel="next", </link?start=0>; rel="first"'
        return web.json_response(self._page(selected, start, size), headers=headers)

    def _page(self, selected: list[dict[str, Any]], start: int, size: int) -> list[Any]:
        rows: list[Any] = selected[start:start + size]
        if self.bad_page is not None and start == self.bad_page and rows:
            rows = ["not an object", *rows[1:]]
        return rows


def numbered(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"record {i}", "updated": i // 4} for i in range(first, first + n)]


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api(numbered(2_000))
    yield server
    server.close()


STYLES: dict[str, dict[str, Any]] = {
    "cursor": {"records_path": "data", "pagination": {"type": "cursor", "cursor_path": "meta.next",
                                                      "size_param": "limit", "size": 300}},
    "offset": {"records_path": "items", "pagination": {"type": "offset", "limit": 300}},
    "page": {"pagination": {"type": "page", "size": 300}},
    "link": {"pagination": {"type": "link"}},
}


def rest_config(url: str, **extra: Any) -> RestSourceConfig:
    return RestSourceConfig.model_validate({"name": "api", "type": "rest", "url": url, "requests_per_second": 1000,
                                            "auth": {"type": "bearer", "token": TOKEN}, **extra})


def read(config: RestSourceConfig, committed: Mapping[str, Position] | None = None,
         max_rows: int = 500) -> list[Chunk]:
    async def work() -> list[Chunk]:
        source = RestSource(config, pipeline="p", once=True, max_rows=max_rows)
        try:
            return [c async for c in source.chunks(FixedCheckpoints(committed), asyncio.Event())]
        finally:
            await source.close()
    return asyncio.run(work())


def ids(chunks: Sequence[Chunk]) -> list[int]:
    return [i for c in chunks for i in (c.rows.column("id").to_pylist() if c.rows.num_rows else [])]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_pagination_style_reads_every_record_once_and_resumes_mid_page(api: Api, style: str) -> None:
    config = rest_config(api.url(style), **STYLES[style])
    chunks = read(config)
    assert ids(chunks) == list(range(2_000))
    assert all(c.rows.num_rows <= 500 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert position_text(after.start) == position_text(before.end)
    assert {n["headers"].get("authorization") for n in api.seen} == {f"Bearer {TOKEN}"}
    # From a position inside a page (chunks of 70 rows end mid-page): exactly the records after it.
    small = read(config, max_rows=70)
    middle = small[len(small) // 2]
    assert ids(read(config, {config.url: middle.end})) == list(range(ids(small).index(ids([middle])[-1]) + 1, 2_000))
    assert ids(read(config, {config.url: small[-1].end})) == []


def test_a_record_that_is_not_an_object_goes_to_the_dlq_and_the_rest_is_read(api: Api) -> None:
    api.bad_page = 600
    chunks = read(rest_config(api.url("offset"), **STYLES["offset"]))
    assert ids(chunks) == [i for i in range(2_000) if i != 600]
    [reject] = [r for c in chunks for r in c.rejects]
    assert "not a JSON object" in reject.reason and reject.payload == '"not an object"'
    position_text(reject.position)


def test_incremental_by_a_field_resumes_from_the_committed_value(api: Api) -> None:
    config = rest_config(api.url("cursor"), **STYLES["cursor"], incremental={"field": "updated", "param": "since"})
    chunks = read(config, max_rows=77)  # 77 is not a multiple of 4: chunks end between ties
    assert ids(chunks) == list(range(2_000))
    middle = chunks[9]
    assert middle.end["ties"] not in (0, 4), "the chunk should end inside a run of equal values"
    api.seen.clear()
    resumed = read(config, {config.url: middle.end})
    assert ids(resumed) == list(range(ids(chunks[:10])[-1] + 1, 2_000))
    assert api.seen[0]["query"]["since"] == str(middle.end["value"])
    # New records after the last committed value come in the next run, and only they.
    api.records += numbered(50, 2_000)
    assert ids(read(config, {config.url: chunks[-1].end})) == list(range(2_000, 2_050))


def test_retries_honour_retry_after_and_give_up_with_an_error_that_holds_no_secret(api: Api) -> None:
    api.faults = lambda n: (429, "1") if n == 2 else (503, None) if n == 4 else None
    chunks = read(rest_config(api.url("page"), **STYLES["page"]))
    assert ids(chunks) == list(range(2_000))
    throttled = next(n for n in api.seen if n["n"] == 2)
    assert api.seen[2]["at"] - throttled["at"] >= 0.95, "the retry came before Retry-After said"
    api.faults = lambda n: (500, None)
    with pytest.raises(Exception) as failure:
        read(rest_config(api.url("page"), **STYLES["page"], max_retries=2))
    assert "HTTP 500" in str(failure.value) and TOKEN not in str(failure.value)
    api.auth = ("Authorization", "Bearer another")
    with pytest.raises(ConfigError, match="HTTP 401") as refused:
        read(rest_config(api.url("page"), **STYLES["page"]))
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize("kind", ["basic", "api_key"])
def test_basic_and_api_key_auth_from_the_credentials_provider(api: Api, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REST_SECRET", TOKEN)
    if kind == "basic":
        auth = {"type": "basic", "username": "reader", "password": {"from": "env", "name": "REST_SECRET"}}
        api.auth = ("Authorization", "Basic " + base64.b64encode(f"reader:{TOKEN}".encode()).decode())
    else:
        auth = {"type": "api_key", "header": "X-Api-Token", "value": {"from": "env", "name": "REST_SECRET"}}
        api.auth = ("X-Api-Token", TOKEN)
    config = rest_config(api.url("page"), **STYLES["page"], auth=auth)
    assert TOKEN not in repr(config) and TOKEN not in str(config.model_dump())
    assert ids(read(config)) == list(range(2_000))
    api.auth = (api.auth[0], "something else")
    with pytest.raises(ConfigError, match="HTTP 401") as refused:
        read(config)
    assert TOKEN not in str(refused.value)


class TestRestSourceContract(SourceContract):
    server: Api | None = None

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        self.server = Api([], token=None)
        yield
        self.server.close()

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        assert self.server is not None
        config = RestSourceConfig.model_validate({"name": "api", "type": "rest", "url": self.server.url("offset"),
                                                  "records_path": "items", "requests_per_second": 1000,
                                                  "pagination": {"type": "offset", "limit": 3}})
        return RestSource(config, pipeline="p", once=once, max_rows=max_rows)

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        assert self.server is not None
        self.server.records.extend(dict(r) for r in records)

    async def write_malformed(self) -> bool:
        assert self.server is not None
        self.server.records.append("not an object")  # type: ignore[arg-type]
        return True


# -- the daemon, end to end ----------------------------------------------------------------------

def pipeline_config(path: Path, db: Path, source: dict[str, Any], max_rows: int = 5_000) -> Path:
    return write_config(path, {
        "service": {"log_format": "json"},
        "sources": [{"name": "api", "type": "rest", "auth": {"type": "bearer", "token": TOKEN}, **source}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(db)}],
        "resources": [{"name": "events", "source": "api", "destination": "db", "table": "events", "mode": "append",
                       "batch": {"max_rows": max_rows, "max_wait": "0.2s"}}],
    })


def count(db: Path, sql: str = "SELECT count(*) FROM events") -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        try:
            return int(connection.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def wait_for(what: str, condition: Callable[[], bool], proc: Any, log: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"conduitd exited with {proc.returncode} while waiting for {what}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{tail(log)}")
        time.sleep(0.02)


def test_100000_records_with_429s_and_500s_and_a_sigkill_mid_way_arrive_exactly_once(tmp_path: Path) -> None:
    server = Api(numbered(100_000))
    # Faults: a 500 every 23rd request, a 429 every 17th (Retry-After 0; twice 1 second).
    server.faults = lambda n: (500, None) if n % 23 == 0 else (429, "1" if n in (17, 34) else "0") \
        if n % 17 == 0 else None
    db, log = tmp_path / "out.db", tmp_path / "conduitd.log"
    try:
        config = pipeline_config(tmp_path / "c.yaml", db, {
            "url": server.url("cursor"), "records_path": "data", "requests_per_second": 40,
            "pagination": {"type": "cursor", "cursor_path": "meta.next", "size_param": "limit", "size": 1000}})
        proc = start_conduitd("run", "--once", "-c", str(config), log=log)
        try:
            wait_for("a third of the records committed", lambda: count(db) >= 30_000, proc, log)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            stop_daemon(proc)
        killed_at = count(db)
        assert killed_at < 100_000, "the kill came after the end: nothing was shown"
        before = len(server.seen)
        done = conduitd("run", "--once", "-c", str(config), timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        # The second run asks for the first page once (the preflight check), then resumes at the
        # committed page: no page before it is read again.
        asked = [int(n["query"].get("cursor", "0")) for n in server.seen[before:] if n["status"] == 200]
        assert asked.count(0) == 1 and min(a for a in asked if a) >= killed_at - 1000, asked[:5]
        with contextlib.closing(sqlite3.connect(db)) as connection:
            rows = connection.execute("SELECT id, name, updated FROM events ORDER BY id").fetchall()
        assert rows == [(i, f"record {i}", i // 4) for i in range(100_000)], "not every record exactly once"
        assert {s for n in server.seen if (s := n["status"]) != 200} == {429, 500}
        assert {n["headers"]["authorization"] for n in server.seen} == {f"Bearer {TOKEN}"}
        # The rate limit (40 a second): any 10 consecutive requests of the run's pipeline span at
        # least 8 intervals (one spare for the jitter of arrival at the server).
        first = next(i for i, n in enumerate(server.seen) if i >= before and n["query"].get("cursor"))
        starts = [n["at"] for n in server.seen[first:]]
        assert all(b - a >= 8 / 40 for a, b in zip(starts, starts[10:], strict=False)), "faster than the limit"
        output = log.read_text() + done.stdout + done.stderr
        assert TOKEN not in output and TOKEN not in db.read_bytes().decode("latin-1")
    finally:
        server.close()


def test_a_daemon_stopped_and_started_again_resumes_incrementally_from_the_committed_value(tmp_path: Path) -> None:
    server = Api(numbered(3_000))
    db, log = tmp_path / "out.db", tmp_path / "conduitd.log"
    try:
        config = pipeline_config(tmp_path / "c.yaml", db, {
            "url": server.url("offset"), "records_path": "items", "poll_interval": "0.3s", "requests_per_second": 200,
            "pagination": {"type": "offset", "limit": 500}, "incremental": {"field": "updated", "param": "since"}},
            max_rows=700)
        proc = start_daemon(config, log)
        try:
            wait_for("the first 3,000 records", lambda: count(db) == 3_000, proc, log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, tail(log)
        finally:
            stop_daemon(proc)
        server.records += numbered(1_001, 3_000)  # 3,000..4,000: the value 750 gets a fifth record
        server.records.append({"id": 4_001, "name": "record 4001", "updated": 750})
        before = len(server.seen)
        proc = start_daemon(config, log)
        try:
            wait_for("the new records", lambda: count(db) == 4_002, proc, log)
            first = next(n for n in server.seen[before:] if n["status"] == 200)
            assert first["query"]["since"] == "749", "the daemon did not ask from the committed value"
            # A further poll finds nothing new: wait for two more requests, then count again.
            polled = len(server.seen)
            wait_for("another poll", lambda: len(server.seen) > polled + 1, proc, log)
            assert count(db) == 4_002
        finally:
            stop_daemon(proc)
        with contextlib.closing(sqlite3.connect(db)) as connection:
            got = [r[0] for r in connection.execute("SELECT id FROM events ORDER BY id")]
        assert got == list(range(4_002))
        assert TOKEN not in log.read_text()
    finally:
        server.close()
