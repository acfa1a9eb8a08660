"""The health server against a hostile local client: whatever bytes arrive, it answers (400 for
what it cannot parse), logs nothing above DEBUG and no traceback, keeps serving /livez, and never
names the Python or aiohttp version."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.ops.health import HealthServer
from conduitd.ops.metrics import Metrics


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def loud(self) -> list[str]:
        """Records above DEBUG, or carrying a traceback."""
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records
                if r.levelno > logging.DEBUG or r.exc_info or r.exc_text or r.stack_info]


@contextmanager
def serving() -> Iterator[tuple[int, Collect]]:
    """A HealthServer on its own event loop thread, and every log record the process writes."""
    collect = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HealthServer("127.0.0.1", 0, Metrics(), lambda: [])
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
        collect.records.clear()  # what the requests cause, not the start's own INFO line
        yield port, collect
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        root.removeHandler(collect)
        root.setLevel(level)


def exchange(port: int, data: bytes, *, close: bool = True) -> bytes:
    """Send `data`, close our side (so that an incomplete request ends too), and read what the
    server answers until it closes. The server may close first (a request it refuses), or drop
    a request whose client has gone before answering it: an empty answer is an answer too."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def header(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def livez(port: int) -> bytes:
    return exchange(port, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", close=False)


HOSTILE = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
    b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",  # an oversized header
    b"GET /" + b"p" * 70_000 + b" HTTP/1.1\r\n\r\n",  # an oversized request line
    b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(1000)) + b"\r\n",  # too many headers
    b"FOO\x00BAR / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"POST /livez HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: \xff\r\n\r\n",
    b"\r\n" * 1000,
]


@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_a_malformed_request_is_answered_quietly_and_the_server_goes_on(data: bytes) -> None:
    with serving() as (port, log):
        answer = exchange(port, data)
        assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:200]
        if answer:
            assert answer.split(b" ", 2)[1] == b"400", answer[:200]
            assert header(answer, b"Server") == b"conduitd"
        assert livez(port).startswith(b"HTTP/1.1 200"), "the server stopped answering"
        assert log.loud() == []


def test_responses_do_not_name_the_python_or_aiohttp_version() -> None:
    with serving() as (port, _):
        for path in (b"/livez", b"/readyz", b"/status", b"/metrics", b"/nothing"):
            answer = exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              close=False)
            assert header(answer, b"Server") == b"conduitd", answer[:300]
            assert b"Python/" not in answer and b"aiohttp" not in answer.lower()


_METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"BREW", b"G\x00T", b"", b"get"])
_TOKEN = st.binary(min_size=0, max_size=40)
_REQUEST = st.builds(
    lambda method, path, version, headers, body: method + b" " + path + b" " + version + b"\r\n"
    + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body,
    _METHODS,
    st.one_of(st.sampled_from([b"/livez", b"/status", b"*", b""]), _TOKEN),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1x", b""]),
    st.lists(st.tuples(st.one_of(st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Upgrade",
                                                  b"Connection", b"Expect"]), _TOKEN), _TOKEN), max_size=6),
    _TOKEN,
)


@settings(max_examples=80)
@given(st.lists(st.one_of(st.binary(max_size=300), _REQUEST), min_size=1, max_size=3))
def test_generated_garbage_never_logs_loudly_or_stops_the_server(requests: list[bytes]) -> None:
    with serving() as (port, log):
        for data in requests:
            answer = exchange(port, data)
            assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:200]
            if answer:
                assert header(answer, b"Server") == b"conduitd", answer[:300]
        assert livez(port).startswith(b"HTTP/1.1 200")
        assert log.loud() == []
