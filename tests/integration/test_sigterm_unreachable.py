"""SIGTERM while the destination is away: with nothing queued the daemon stops at once and exits
0 (it used to wait out the whole drain deadline and exit 1); with rows queued that cannot be
committed it still does not claim success, and a later run commits them exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, write_config
from tests.helpers.kafka import free_port
from tests.helpers.private_pg import create_private_postgres
from tests.helpers.syncdb import Db

DRAIN_TIMEOUT = 60.0


def messages(log: Path) -> list[tuple[str, str]]:
    """(level, message) of every JSON log line."""
    found = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.append((str(entry.get("level")), str(entry.get("message"))))
    return found


def wait_for_message(log: Path, proc: subprocess.Popen[bytes], fragment: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(fragment in m for _, m in messages(log)):
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {fragment!r} in the log:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def config(tmp_path: Path, dsn: str, *, drain_timeout: float) -> Path:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "drain_timeout": f"{drain_timeout}s", "retry_max_wait": "0.5s"},
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl"), "poll_interval": "0.1s"}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": "public", "connect_timeout": "2s"}],
        "resources": [{"name": "events", "source": "s", "destination": "pg", "table": "events",
                       "batch": {"max_wait": "0.1s"}}],
    })


def test_sigterm_while_the_destination_is_unreachable_and_nothing_is_queued_exits_0_at_once(tmp_path: Path) -> None:
    dsn = f"postgresql://u:topsecret@127.0.0.1:{free_port()}/x"  # a closed port: no server
    log = tmp_path / "daemon.log"
    proc = start_daemon(config(tmp_path, dsn, drain_timeout=DRAIN_TIMEOUT), log)
    try:
        wait_for_message(log, proc, "connect failed, retrying")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=DRAIN_TIMEOUT + 30)
        took = time.monotonic() - signalled
    finally:
        stop_daemon(proc)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert took < DRAIN_TIMEOUT / 2, f"took {took:.1f}s: it waited for the drain deadline"
    assert not any("drain deadline" in m for _, m in messages(log)), text[-3000:]
    assert "Traceback" not in text and "topsecret" not in text


def test_sigterm_with_rows_queued_for_a_destination_that_went_away_does_not_claim_success(tmp_path: Path) -> None:
    server = create_private_postgres()
    try:
        path = config(tmp_path, server.dsn, drain_timeout=3)
        data = tmp_path / "in" / "a.jsonl"
        data.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(50)))
        log = tmp_path / "daemon.log"
        proc = start_daemon(path, log)
        try:
            db = Db(server.dsn, "public")
            try:
                deadline = time.monotonic() + 60
                while db.count() < 50:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.05)
            finally:
                db.close()
            server.stop()
            with data.open("a") as handle:
                handle.write("".join(json.dumps({"id": i}) + "\n" for i in range(50, 80)))
            wait_for_message(log, proc, "commit failed, retrying")
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            stop_daemon(proc)
        assert code != 0, "rows were queued and not committed, yet the daemon claimed success"
        assert "Traceback" not in log.read_text()
        server.start()
        again = conduitd("run", "--once", "-c", str(path), timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        db = Db(server.dsn, "public")
        try:
            assert sorted(db.ids()) == list(range(80))  # each row exactly once
        finally:
            db.close()
    finally:
        server.remove()
