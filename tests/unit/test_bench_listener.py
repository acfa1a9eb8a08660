"""benchmarks/listener.py: the process behind a local listening port (the benchmarks bill a shared
broker's CPU by it)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from benchmarks.listener import pid_listening_on, port_of


def test_port_of_reads_host_port_urls_and_bootstrap_lists() -> None:
    assert port_of("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert port_of("http://localhost:4567") == ("localhost", 4567)
    assert port_of("127.0.0.1:9092,127.0.0.1:9093") == ("127.0.0.1", 9092)
    assert port_of("no-port") is None
    assert port_of("host:notaport") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pid_listening_on_finds_this_process_and_nothing_remote() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert pid_listening_on(f"127.0.0.1:{port}") == os.getpid()
        assert pid_listening_on(f"http://127.0.0.1:{port}") == os.getpid()
        assert pid_listening_on(f"example.com:{port}") is None
    assert pid_listening_on(f"127.0.0.1:{port}") is None  # closed: nobody listens
