"""End to end: files replaced in place (overwritten, renamed over, shrunk) or appended to between
and during runs land in the destination exactly once, into SQLite and PostgreSQL, with no traceback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime
from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, write_config
from tests.helpers.syncdb import Db


def lines(ids: list[int]) -> bytes:
    return b"".join(orjson.dumps({"id": i, "pad": "x"}) + b"\n" for i in ids)


def overwrite(path: Path, data: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as handle:
        handle.truncate(0)
        handle.write(data)


def rename_over(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def config(tmp_path: Path, destination: dict[str, Any]) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in" / "*.jsonl"), "poll_interval": "0.05s"}],
        "destinations": [destination],
        "resources": [{"name": "events", "source": "s", "destination": "db", "batch": {"max_wait": "0.05s"}}],
    })


def sqlite_ids(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT id FROM events")]
    finally:
        db.close()


# The scenarios of the report: what is done to the file, and the ids that are new in it then.
SCENARIOS: list[tuple[str, Any, list[int]]] = [
    ("overwrite with the same size", lambda f: overwrite(f, lines([200001, 200002])), [200001, 200002]),
    ("larger replacement", lambda f: overwrite(f, lines([300001, 300002, 300003])), [300001, 300002, 300003]),
    ("os.replace over the old name", lambda f: rename_over(f, lines([400001])), [400001]),
    ("append", lambda f: append(f, lines([400002])), [400002]),
    ("shrink", lambda f: overwrite(f, lines([500001])), [500001]),
]
EXPECTED = [100001, 100002, *(i for _, _, new in SCENARIOS for i in new)]


def test_once_runs_read_replaced_and_appended_files_exactly_once_into_sqlite(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    file = tmp_path / "in" / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    path = config(tmp_path, {"name": "db", "type": "sqlite", "path": str(tmp_path / "out.db")})
    outputs = []
    for action in [lambda f: None, *(a for _, a, _ in SCENARIOS)]:
        action(file)
        result = conduitd("--once", "-c", str(path))
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert Counter(sqlite_ids(tmp_path / "out.db")) == Counter(EXPECTED)
    assert not any("Traceback" in o for o in outputs)
    assert sum("was replaced" in o for o in outputs) == 4  # all but the append say so


def test_once_runs_read_replaced_files_exactly_once_into_postgres(tmp_path: Path, db: Db, pg_dsn: str) -> None:
    (tmp_path / "in").mkdir()
    file = tmp_path / "in" / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    path = config(tmp_path, {"name": "db", "type": "postgres", "dsn": pg_dsn, "schema": db.schema})
    for action in [lambda f: None, *(a for _, a, _ in SCENARIOS)]:
        action(file)
        result = conduitd("--once", "-c", str(path))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert Counter(db.ids()) == Counter(EXPECTED)


def test_the_daemon_reads_files_replaced_while_it_runs_exactly_once(tmp_path: Path, db: Db, pg_dsn: str) -> None:
    (tmp_path / "in").mkdir()
    file = tmp_path / "in" / "a.jsonl"
    file.write_bytes(lines([100001, 100002]))
    path = config(tmp_path, {"name": "db", "type": "postgres", "dsn": pg_dsn, "schema": db.schema})
    daemon = start_daemon(path, tmp_path / "log")
    try:
        wait_until(lambda: db.count() == 2)
        for _, action, new in SCENARIOS:
            before = db.count()
            action(file)
            wait_until(lambda: db.count() >= before + len(new))  # noqa: B023 - used at once
    finally:
        stop_daemon(daemon)
    assert Counter(db.ids()) == Counter(EXPECTED)
    assert "Traceback" not in (tmp_path / "log").read_text()


def wait_until(condition: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- generated sequences of operations, each followed by a batch run, into SQLite -------------------

steps = st.lists(st.tuples(st.sampled_from(["append", "overwrite", "rename", "remove"]),
                           st.integers(min_value=0, max_value=30)), min_size=1, max_size=6)


@settings(max_examples=25)
@given(steps, st.integers(min_value=1, max_value=10))
def test_generated_operations_load_every_record_exactly_once(tmp_path_factory: pytest.TempPathFactory,
                                                             operations: list[tuple[str, int]], max_rows: int) -> None:
    tmp_path = tmp_path_factory.mktemp("ops")
    (tmp_path / "in").mkdir()
    file = tmp_path / "in" / "a.jsonl"
    path = write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in" / "*.jsonl")}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "events", "source": "s", "destination": "db", "batch": {"max_rows": max_rows}}],
    })
    written: list[int] = []
    next_id = 100_000
    for kind, count in operations:
        ids = list(range(next_id, next_id + count))
        next_id += count
        if kind == "append":
            append(file, lines(ids))
        elif kind == "overwrite":
            overwrite(file, lines(ids))
        elif kind == "rename":
            rename_over(file, lines(ids))
        else:
            file.unlink(missing_ok=True)
            ids = []
        written += ids
        assert asyncio.run(Runtime(load_config(path), once=True).run()) == 0
    stored = sqlite_ids(tmp_path / "out.db") if written else []
    assert Counter(stored) == Counter(written)
