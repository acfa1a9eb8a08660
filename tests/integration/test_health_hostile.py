"""The real daemon's health port under raw-socket garbage: its log gets no ERROR line and no
traceback, it still answers /livez, and its Server header names no version."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

from tests.helpers.daemon import start_daemon, stop_daemon, write_config
from tests.helpers.kafka import free_port

GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(1000)) + b"\r\n",
    b"BREW /livez HTTP/1.1\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
]


def send(port: int, data: bytes, *, close: bool) -> bytes:
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


def livez(port: int) -> bytes:
    return send(port, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", close=False)


def test_garbage_on_the_health_port_leaves_no_error_in_the_daemon_log(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "in").mkdir()
    config = write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "health_port": port},
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in" / "*.jsonl"), "poll_interval": "0.1s"}],
        "destinations": [{"name": "d", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "events", "source": "s", "destination": "d"}],
    })
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        for data in GARBAGE * 5:  # a small flood
            answer = send(port, data, close=True)
            assert b"Python/" not in answer and b"aiohttp" not in answer.lower()
        answer = livez(port)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b"\r\nServer: conduitd\r\n" in answer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop_daemon(proc)
    text = log.read_text()
    assert "Traceback" not in text
    levels = [json.loads(line).get("level") for line in text.splitlines() if line.startswith("{")]
    assert "error" not in levels and "critical" not in levels, text[-3000:]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False  # not listening yet
    return livez(port).startswith(b"HTTP/1.1 200")
