"""Running under systemd: the daemon speaks the notification protocol a `Type=notify` unit needs
(READY=1 once it can write, STATUS=, watchdog pings, STOPPING=1 on SIGTERM), and the unit shipped
in systemd/ runs the command and options the daemon really has."""

from __future__ import annotations

import configparser
import signal
import socket
import time
from pathlib import Path

import pytest

from conduitd.config import ServiceConfig
from conduitd.ops.notify import Notifier
from tests.helpers.daemon import conduitd, start_conduitd, stop_daemon, write_config

ROOT = Path(__file__).resolve().parents[2]


def receive_until(sock: socket.socket, wanted: str, deadline: float, seen: list[str]) -> None:
    """Collect datagrams into `seen` until one equals `wanted` (or fail at the deadline)."""
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {wanted!r} from the daemon; got {seen}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        seen.extend(data.decode().splitlines())


def collect_for(sock: socket.socket, seconds: float, seen: list[str]) -> None:
    """Collect every datagram that arrives within `seconds` into `seen`."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            seen.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            break


def file_to_sqlite(tmp_path: Path, lines: int) -> Path:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jsonl").write_text("".join(f'{{"id": {i}, "v": "x{i}"}}\n' for i in range(lines)))
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"drain_timeout": "10s"},
        "sources": [{"name": "files", "type": "file", "path": str(source / "*.jsonl")}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "events", "source": "files", "destination": "db", "table": "events",
                       "batch": {"max_rows": 100, "max_wait": "200ms"}}],
    })


def test_notify_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    config = file_to_sqlite(tmp_path, 250)
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    log = tmp_path / "daemon.log"
    proc = start_conduitd("run", "-c", str(config), log=log,
                          env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"})
    seen: list[str] = []
    try:
        receive_until(sock, "READY=1", time.monotonic() + 60, seen)
        assert any(m.startswith("STATUS=events: running") for m in seen), seen
        before = seen.count("WATCHDOG=1")
        collect_for(sock, 1.0, seen)
        assert seen.count("WATCHDOG=1") - before >= 3, "watchdog pings stopped (WatchdogSec=0.4s wants one per 0.2s)"
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", time.monotonic() + 30, seen)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        stop_daemon(proc)
        sock.close()
    assert seen.index("READY=1") < seen.index("STOPPING=1")


def test_no_ready_while_the_destination_cannot_be_reached(tmp_path: Path) -> None:
    """READY=1 means the daemon can write: with the database unreachable it must not be sent."""
    config = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "*.jsonl")}],
        "destinations": [{"name": "pg", "type": "postgres",
                          "dsn": "postgresql://nobody:secret@127.0.0.1:9/none?connect_timeout=1"}],
        "resources": [{"name": "events", "source": "files", "destination": "pg", "table": "events"}],
    })
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    proc = start_conduitd("run", "-c", str(config), log=tmp_path / "daemon.log", env={"NOTIFY_SOCKET": str(address)})
    seen: list[str] = []
    try:
        collect_for(sock, 4.0, seen)
        assert "READY=1" not in seen
        assert any(m.startswith("STATUS=events: retrying") for m in seen), seen
        assert not any("secret" in m for m in seen), "a password reached the status line"
    finally:
        proc.send_signal(signal.SIGTERM)
        stop_daemon(proc)
        sock.close()


def test_abstract_socket_address_and_silence_without_systemd() -> None:
    name = f"conduitd-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.status("a: running")
        notifier.status("a:  running")  # unchanged once whitespace is folded: not sent again
        notifier.stopping()
        sock.settimeout(2)
        assert [sock.recv(100) for _ in range(3)] == [b"READY=1", b"STATUS=a: running", b"STOPPING=1"]
        notifier.close()
    finally:
        sock.close()
    silent = Notifier({})
    assert not silent.enabled
    silent.ready()  # nothing to send to: no error
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None  # not ours
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_seconds == 3.0


def test_the_shipped_unit_runs_real_options() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / "conduitd.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["KillSignal"] == "SIGTERM"
    command = service["ExecStart"].split()
    assert command[0].endswith("conduitd") and command[1] == "run"
    options = [word for word in command[2:] if word.startswith("-")]
    help_text = conduitd("run", "--help").stdout
    for option in options:
        assert option in help_text, f"the unit passes {option}, which `conduitd run` does not take"
    reload = service.get("ExecReload")
    assert reload is None, "the daemon has no reload: a unit must not promise one"
    # systemd must wait longer than the default drain deadline before it escalates to SIGKILL.
    assert int(service["TimeoutStopSec"].rstrip("s")) > ServiceConfig().drain_timeout
