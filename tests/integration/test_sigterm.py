"""Stopping the real daemon: SIGTERM drains and exits 0, a second SIGTERM exits at once with 1,
and neither loses nor duplicates a record; a running daemon picks up appended lines and new files.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, write_config
from tests.helpers.syncdb import Db

PIPELINE = "events"
DRAIN_TIMEOUT = 15.0
_SUMMARY = re.compile(r"pipeline events (\w+): (\d+) records read, (\d+) rows written, (\d+) to the DLQ, (\d+) batches")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def log_messages(text: str) -> list[str]:
    """The `message` of every JSON log line (other lines are ignored)."""
    messages = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "message" in entry:
            messages.append(str(entry["message"]))
    return messages


def summary(text: str) -> dict[str, Any]:
    """The last end-of-run summary in a log: state, records read, rows written, DLQ rows, batches."""
    found = [m for m in map(_SUMMARY.search, log_messages(text)) if m]
    assert found, f"no end-of-run summary in the log:\n{tail(text)}"
    state, read, written, dlq, batches = found[-1].groups()
    return {"state": state, "read": int(read), "written": int(written), "dlq": int(dlq), "batches": int(batches)}


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def wait_for(what: str, condition: Callable[[], bool], proc: subprocess.Popen[bytes] | None, log: Path,
             timeout: float = 60, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None:
            assert proc.poll() is None, f"the daemon exited with {proc.returncode} waiting for {what}:\n" \
                                        f"{tail(log_text(log))}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{tail(log_text(log))}"
        time.sleep(interval)


def make_config(tmp_path: Path, dsn: str, schema: str, data_dir: Path, *, max_rows: int) -> Path:
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"log_format": "json", "drain_timeout": f"{DRAIN_TIMEOUT}s"},
        "sources": [{"name": "events", "type": "file", "path": str(data_dir / "*.jsonl"), "poll_interval": "0.2s"}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": PIPELINE, "source": "events", "destination": "pg", "table": "events",
                       "mode": "append", "batch": {"max_rows": max_rows, "max_wait": "0.2s"}}],
    })


def record(rng: random.Random, record_id: int) -> bytes:
    return orjson.dumps({
        "id": record_id,
        "name": f"name-{rng.randrange(10**9)}",
        "value": rng.randrange(10**6) / 100 + 0.001,
        "at": f"2026-03-{1 + record_id % 28:02d}T{record_id % 24:02d}:{record_id % 60:02d}:07.250Z",
        "attrs": {"k": rng.choice(["x", "y", "z"]), "n": [record_id % 7, record_id % 11]},
    }) + b"\n"


class Input:
    """JSON-lines files written by the test, with the ids of every valid line per byte range."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lines: dict[str, list[tuple[int, int | None]]] = {}
        """Per file: (byte offset after the line, its id or None for a malformed line)."""

    def write(self, name: str, ids: range, rng: random.Random, malformed: dict[int, bytes] | None = None) -> Path:
        """Append records `ids` to file `name`; `malformed[i]` is written before the record with id i."""
        path = self.dir / name
        entries = self.lines.setdefault(str(path), [])
        offset = entries[-1][0] if entries else 0
        chunks = []
        for record_id in ids:
            for line, value in (((malformed or {}).get(record_id), None), (record(rng, record_id), record_id)):
                if line is None:
                    continue
                offset += len(line)
                entries.append((offset, value))
                chunks.append(line)
        with path.open("ab") as handle:
            handle.write(b"".join(chunks))
        return path

    def ids(self, upto: dict[str, int] | None = None) -> list[int]:
        """Ids of the valid lines (before `upto[file]`, if given)."""
        return [i for path, entries in self.lines.items() for end, i in entries
                if i is not None and (upto is None or end <= upto.get(path, 0))]

    def sizes(self) -> dict[str, int]:
        return {path: entries[-1][0] for path, entries in self.lines.items() if entries}

    def total(self) -> int:
        return sum(self.sizes().values())


def bad_lines(ids: range, every: int) -> dict[int, bytes]:
    """Malformed lines to put before every `every`-th id: alternately not JSON and a JSON array."""
    return {i: (b"not json " + str(i).encode() if n % 2 else b"[1, 2, " + str(i).encode() + b"]") + b"\n"
            for n, i in enumerate(ids[every // 2::every])}


def assert_exactly(db: Db, expected: list[int]) -> None:
    ids = db.ids()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicated ids"
    assert sorted(ids) == sorted(expected), (f"{len(set(expected) - set(ids))} ids missing, "
                                             f"{len(set(ids) - set(expected))} unexpected")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

RECORDS = 100_000


def test_sigterm_drains_exits_0_and_a_following_once_run_completes_the_input_exactly(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    rng = random.Random(11)
    data = Input(tmp_path / "data")
    data.write("a.jsonl", range(RECORDS // 2), rng, bad_lines(range(RECORDS // 2), 10_000))
    data.write("b.jsonl", range(RECORDS // 2, RECORDS), rng, bad_lines(range(RECORDS // 2, RECORDS), 10_000))
    malformed = sorted(line.decode().strip() for part in (bad_lines(range(RECORDS // 2), 10_000),
                                                          bad_lines(range(RECORDS // 2, RECORDS), 10_000))
                       for line in part.values())
    config = make_config(tmp_path, pg_dsn, pg_schema, data.dir, max_rows=2000)
    log = tmp_path / "daemon.log"

    proc = start_daemon(config, log)
    try:
        wait_for("two committed batches", lambda: db.count() >= 4000, proc, log)
        at_signal = sum(db.checkpoints().values())
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=DRAIN_TIMEOUT + 10)
        took = time.monotonic() - signalled
    finally:
        stop_daemon(proc)
    text = log_text(log)
    assert code == 0, f"exit code {code} after SIGTERM:\n{tail(text)}"
    assert took < DRAIN_TIMEOUT, f"took {took:.1f}s to drain"
    messages = log_messages(text)
    assert any(m.startswith("SIGTERM: draining") for m in messages), tail(text)
    assert not any("drain deadline" in m for m in messages), tail(text)
    first = summary(text)
    assert first["state"] == "stopped"

    # What it committed is exactly the input before the stored positions: no partial batch, no gap.
    positions = db.checkpoints()
    assert 0 < at_signal <= sum(positions.values()) < data.total(), "the SIGTERM did not land mid-load"
    assert_exactly(db, data.ids(positions))
    assert first["written"] == db.count() and first["read"] == first["written"] + first["dlq"]

    # A --once run reads the rest (and only the rest)...
    second = conduitd("run", "--once", "-c", str(config))
    assert second.returncode == 0, second.stderr
    rest = summary(second.stderr)
    assert rest["state"] == "done"
    assert rest["written"] == RECORDS - first["written"]
    assert_exactly(db, list(range(RECORDS)))
    assert db.dlq_payloads() == malformed
    assert db.checkpoints() == data.sizes()

    # ...and one more reads nothing new and writes nothing.
    third = conduitd("run", "--once", "-c", str(config))
    assert third.returncode == 0, third.stderr
    assert summary(third.stderr) == {"state": "done", "read": 0, "written": 0, "dlq": 0, "batches": 0}
    assert db.count() == RECORDS
    assert db.dlq_payloads() == malformed
    assert db.checkpoints() == data.sizes()


def test_a_second_sigterm_exits_at_once_with_1_and_loses_nothing(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    rng = random.Random(12)
    data = Input(tmp_path / "data")
    data.write("a.jsonl", range(RECORDS), rng)
    data.write("b.jsonl", range(RECORDS, 2 * RECORDS), rng)
    # Big batches so that the drain after the first SIGTERM takes long enough to be interrupted.
    config = make_config(tmp_path, pg_dsn, pg_schema, data.dir, max_rows=20_000)
    log = tmp_path / "daemon.log"

    proc = start_daemon(config, log)
    try:
        wait_for("a committed batch", lambda: db.count() > 0, proc, log)
        proc.send_signal(signal.SIGTERM)
        wait_for("the drain to start", lambda: "SIGTERM: draining" in log_text(log), proc, log,
                 timeout=5, interval=0.002)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - signalled
    finally:
        stop_daemon(proc)
    text = log_text(log)
    assert code == 1, f"exit code {code} after two SIGTERMs:\n{tail(text)}"
    assert took < 1.0, f"took {took:.2f}s to exit after the second SIGTERM"
    assert any(m.startswith("second SIGTERM: exiting at once") for m in log_messages(text)), tail(text)
    positions = db.checkpoints()
    assert_exactly(db, data.ids(positions))  # an interrupted transaction left nothing behind

    again = conduitd("run", "--once", "-c", str(config))
    assert again.returncode == 0, again.stderr
    assert summary(again.stderr)["written"] == 2 * RECORDS - len(data.ids(positions))
    assert_exactly(db, list(range(2 * RECORDS)))
    assert db.dlq_payloads() == []
    assert db.checkpoints() == data.sizes()


def test_a_running_daemon_picks_up_appended_lines_and_new_files(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    rng = random.Random(13)
    data = Input(tmp_path / "data")
    data.write("a.jsonl", range(1000), rng)
    config = make_config(tmp_path, pg_dsn, pg_schema, data.dir, max_rows=500)
    log = tmp_path / "daemon.log"

    proc = start_daemon(config, log)
    try:
        wait_for("the existing file", lambda: db.count() == 1000, proc, log)

        # Lines appended to the file it has read to the end.
        data.write("a.jsonl", range(1000, 1500), rng)
        wait_for("the appended lines", lambda: db.count() == 1500, proc, log)
        time.sleep(0.5)
        data.write("a.jsonl", range(1500, 1510), rng)
        wait_for("more appended lines", lambda: db.count() == 1510, proc, log)

        # A file that did not exist when it started.
        data.write("b.jsonl", range(2000, 2300), rng)
        wait_for("the new file", lambda: db.count() == 1810, proc, log)

        # A line written in two parts (the writer pauses for several polls in the middle of it).
        line = record(rng, 3000)
        path = data.dir / "b.jsonl"
        with path.open("ab") as handle:
            handle.write(line[:25])
        time.sleep(1.0)
        with path.open("ab") as handle:
            handle.write(line[25:])
        data.lines[str(path)].append((data.lines[str(path)][-1][0] + len(line), 3000))
        wait_for("the line written in two parts", lambda: db.count() == 1811, proc, log)
        wait_for("the positions at the file sizes", lambda: db.checkpoints() == data.sizes(), proc, log)

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=DRAIN_TIMEOUT + 10)
    finally:
        stop_daemon(proc)
    assert code == 0, tail(log_text(log))
    assert_exactly(db, data.ids())
    assert db.dlq_payloads() == []
    assert db.checkpoints() == data.sizes()
