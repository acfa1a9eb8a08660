"""`conduitd tune`: reads a running daemon's measurements from /status and prints the suggestions;
clear errors when there is no daemon to ask."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config
from tests.helpers.inprocess import Cli, in_process_cli

ROWS = 20_000


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield from in_process_cli(capsys)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def config(tmp_path: Path, port: int | None, batch: dict[str, Any]) -> Path:
    with (tmp_path / "in.jsonl").open("wb") as out:
        for i in range(1, ROWS + 1):
            out.write(orjson.dumps({"id": i, "name": f"n{i}", "amount": i / 100}) + b"\n")
    service: dict[str, Any] = {"log_format": "json"}
    if port is not None:
        service["health_port"] = port
    return write_config(tmp_path / "conduitd.yaml", {
        "service": service,
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in.jsonl")}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "orders", "source": "files", "destination": "db", "batch": batch}],
    })


def status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except OSError:
        return None


def wait_for_rows(port: int, log: Path, deadline: float = 90) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        answer = status(port)
        if answer and answer["pipelines"][0]["rows_written"] == ROWS:
            return
        time.sleep(0.2)
    raise AssertionError(f"the daemon did not write {ROWS} rows in {deadline}s\n{tail(log)}")


def test_tune_reads_a_running_daemon_and_suggests_a_larger_fixed_size(tmp_path: Path) -> None:
    port = free_port()
    path = config(tmp_path, port, {"max_rows": 500})
    daemon = start_daemon(path, tmp_path / "daemon.log")
    try:
        wait_for_rows(port, tmp_path / "daemon.log")
        done = conduitd("tune", "-c", str(path), "-r", "orders")
        assert done.returncode == 0, done.stderr
        assert "orders (running" in done.stdout and "max_rows: 500" in done.stdout
        assert "commit cost:" in done.stdout
        assert "suggest batch.max_rows: 500 -> " in done.stdout, done.stdout
        as_json = conduitd("tune", "-c", str(path), "--json", "--status-url", f"http://127.0.0.1:{port}/status")
        assert as_json.returncode == 0, as_json.stderr
        [entry] = json.loads(as_json.stdout)
        assert entry["found"] and entry["tuning"]["batches"] == ROWS // 500
        [batch] = [s for s in entry["suggestions"] if s["setting"] == "batch.max_rows"]
        assert batch["now"] == 500 and batch["suggested"] > 500
        # `tune` only read: the table holds what the daemon wrote, nothing more.
        assert status(port)["pipelines"][0]["rows_written"] == ROWS  # type: ignore[index]
    finally:
        stop_daemon(daemon)


def test_tune_shows_auto_with_its_bounds(tmp_path: Path) -> None:
    port = free_port()
    path = config(tmp_path, port, {"max_rows": "auto", "initial_rows": 500, "target_latency": "5s"})
    daemon = start_daemon(path, tmp_path / "daemon.log")
    try:
        wait_for_rows(port, tmp_path / "daemon.log")
        done = conduitd("tune", "-c", str(path))
        assert done.returncode == 0, done.stderr
        assert "max_rows: auto, now " in done.stdout and "target_latency 5.0s" in done.stdout
        assert "max_rows: auto, now 500 rows" not in done.stdout  # it grew
    finally:
        stop_daemon(daemon)


def test_no_daemon_to_ask_is_exit_5(tmp_path: Path, cli: Cli) -> None:
    path = config(tmp_path, free_port(), {"max_rows": 500})
    code, _, err = cli("tune", "-c", str(path))
    assert code == 5 and "no daemon answered at http://127.0.0.1:" in err


def test_no_port_known_and_unknown_pipelines_are_usage_errors(tmp_path: Path, cli: Cli) -> None:
    path = config(tmp_path, None, {"max_rows": 500})
    code, _, err = cli("tune", "-c", str(path))
    assert code == 2 and "--status-url" in err
    code, _, err = cli("tune", "-c", str(path), "-r", "nope", "--status-url", "http://127.0.0.1:1/status")
    assert code == 2 and "no pipeline named nope" in err
