"""Failures are reported as what they are, with a documented exit code and never a traceback:
an unwritable manifest, a full disk under a file DLQ, a read-only SQLite file, bad command
arguments and output paths; and a read command writes nothing to the destination."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.syncdb import Db

ROWS = 20


def write_input(directory: Path, ids: range, bad: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in ids] + [f"not json {i}\n" for i in range(bad)]
    with (directory / "a.jsonl").open("a") as handle:
        handle.write("".join(lines))


def make_config(tmp_path: Path, destination: dict[str, Any], *, service: dict[str, Any] | None = None,
                dlq: dict[str, Any] | None = None) -> Path:
    pipeline: dict[str, Any] = {"name": "events", "source": "s", "destination": "d", "table": "events",
                                "batch": {"max_wait": "0.1s"}}
    if dlq is not None:
        pipeline["dlq"] = dlq
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "once_retry_timeout": "1s", **(service or {})},
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in" / "*.jsonl"), "poll_interval": "0.1s"}],
        "destinations": [{"name": "d", **destination}],
        "resources": [pipeline],
    })


def sqlite(tmp_path: Path, path: Path | None = None) -> dict[str, Any]:
    return {"type": "sqlite", "path": str(path or tmp_path / "out.db")}


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def mounted_tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of our own at `where` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount_read_only(where: Path, *, bind: bool = False) -> None:
    options = "remount,ro,bind" if bind else "remount,ro"
    subprocess.run(["mount", "-o", options, str(where)], check=True)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """`cli(*args)` runs `conduitd ARGS` in this process: (exit code, stdout + stderr)."""
    from conduitd.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


# -- the manifest ------------------------------------------------------------------------------


@pytest.mark.parametrize("obstacle", ["a directory", "a file as its directory", "a read-only mount"])
def test_an_unwritable_manifest_path_stops_the_run_before_anything_is_read(tmp_path: Path, obstacle: str) -> None:
    write_input(tmp_path / "in", range(ROWS))
    with mounted_tmpfs(tmp_path / "ro") as ro:
        if obstacle == "a directory":
            manifest = tmp_path / "manifest"
            manifest.mkdir()
        elif obstacle == "a file as its directory":
            (tmp_path / "plain").write_text("")
            manifest = tmp_path / "plain" / "manifest.jsonl"
        else:
            remount_read_only(ro)
            manifest = ro / "manifest.jsonl"
        config = make_config(tmp_path, sqlite(tmp_path), service={"manifest_path": str(manifest)})
        result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(manifest) in result.stderr and "service.manifest_path" in result.stderr
    no_traceback(result)
    assert not (tmp_path / "out.db").exists(), "data was read and committed before the manifest was checked"


def test_a_manifest_that_cannot_be_written_later_is_logged_and_the_committed_run_stands(tmp_path: Path) -> None:
    # /dev/full opens for appending, and every write to it fails with ENOSPC: a disk that filled
    # up after the start check.
    write_input(tmp_path / "in", range(ROWS))
    config = make_config(tmp_path, sqlite(tmp_path), service={"manifest_path": "/dev/full"})
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    no_traceback(result)
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["level"] == "error" and "manifest" in e["message"] and "ENOSPC" in e["message"] for e in errors)
    assert count_sqlite(tmp_path / "out.db") == ROWS


def count_sqlite(path: Path, table: str = "events") -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


# -- a full disk under a file DLQ ---------------------------------------------------------------


def test_a_full_disk_under_a_file_dlq_is_reported_as_such_and_nothing_is_lost(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    write_input(tmp_path / "in", range(ROWS), bad=3)
    destination = {"type": "postgres", "dsn": pg_dsn, "schema": pg_schema}
    full = conduitd("run", "--once", "-c", str(make_config(tmp_path, destination,
                                                          dlq={"type": "file", "path": "/dev/full"})))
    assert full.returncode == 5, full.stderr[-3000:]  # retried for once_retry_timeout, then given up
    assert "DLQ file" in full.stderr and "ENOSPC" in full.stderr
    assert "PostgreSQL" not in full.stderr.splitlines()[-1]
    no_traceback(full)
    assert db.count() == 0 and db.checkpoints() == {}, "a batch whose DLQ rows were not stored was committed"
    dlq_file = tmp_path / "dlq.jsonl"
    good = conduitd("run", "--once", "-c", str(make_config(tmp_path, destination,
                                                          dlq={"type": "file", "path": str(dlq_file)})))
    assert good.returncode == 0, good.stderr[-3000:]
    assert sorted(db.ids()) == list(range(ROWS))
    assert sorted(json.loads(line)["payload"] for line in dlq_file.read_text().splitlines()) == \
        sorted(f"not json {i}" for i in range(3))


@pytest.mark.parametrize("obstacle", ["a directory", "a read-only mount"])
def test_an_unwritable_dlq_file_stops_the_run_before_anything_is_read(tmp_path: Path, obstacle: str) -> None:
    write_input(tmp_path / "in", range(ROWS), bad=1)
    with mounted_tmpfs(tmp_path / "ro") as ro:
        if obstacle == "a directory":
            path = tmp_path / "dlq"
            path.mkdir()
        else:
            remount_read_only(ro)
            path = ro / "dlq.jsonl"
        result = conduitd("run", "--once", "-c", str(make_config(tmp_path, sqlite(tmp_path),
                                                                dlq={"type": "file", "path": str(path)})))
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(path) in result.stderr
    no_traceback(result)
    assert not (tmp_path / "out.db").exists()


# -- a read-only SQLite database ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["read-only file system", "read-only file in a writable directory"])
def test_a_read_only_sqlite_database_is_a_clear_error_and_still_readable(tmp_path: Path, how: str, cli: Any) -> None:
    with mounted_tmpfs(tmp_path / "mnt") as mnt:
        database = mnt / "out.db"
        config = make_config(tmp_path, sqlite(tmp_path, database))
        write_input(tmp_path / "in", range(ROWS))
        assert cli("run", "--once", "-c", str(config))[0] == 0
        write_input(tmp_path / "in", range(ROWS, 2 * ROWS))
        if how == "read-only file system":
            remount_read_only(mnt)
        else:  # SQLite then opens the file read-only without a word and failed at the first write
            subprocess.run(["mount", "--bind", str(database), str(database)], check=True)
            remount_read_only(database, bind=True)
        try:
            before = digest(database)
            result = conduitd("run", "--once", "-c", str(config))
            assert result.returncode == 2, result.stderr[-3000:]
            assert str(database) in result.stderr and "cannot be written" in result.stderr
            no_traceback(result)
            assert digest(database) == before
            code, shown = cli("checkpoints", "show", "-c", str(config))
            assert code == 0, shown[-3000:]
            assert str(tmp_path / "in" / "a.jsonl") in shown
            assert cli("dlq", "list", "-c", str(config), "-r", "events")[0] == 0
            assert digest(database) == before
        finally:
            if how != "read-only file system":
                subprocess.run(["umount", str(database)], check=False)


# -- bad arguments and output paths of commands -------------------------------------------------


@pytest.mark.parametrize("args", [["dlq", "list", "--limit", "-1"], ["dlq", "list", "--limit", "0"],
                                  ["dlq", "replay", "--limit", "-5"]])
def test_a_nonsense_dlq_limit_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    config = make_config(tmp_path, sqlite(tmp_path))
    result = conduitd(*args, "-c", str(config), "-r", "events")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--limit" in result.stderr
    no_traceback(result)
    assert not (tmp_path / "out.db").exists()


@pytest.mark.parametrize("target", ["directory", "missing/dir/schema.json", "/dev/full"])
def test_an_unwritable_schema_output_is_a_usage_error(tmp_path: Path, target: str) -> None:
    write_input(tmp_path / "in", range(ROWS))
    config = make_config(tmp_path, sqlite(tmp_path))
    if target == "directory":
        (tmp_path / "directory").mkdir()
    output = target if target.startswith("/") else str(tmp_path / target)
    result = conduitd("schema", "events", "-c", str(config), "-o", output)
    assert result.returncode == 2, result.stderr[-3000:]
    assert output in result.stderr
    no_traceback(result)


def test_an_unreadable_dlq_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dlq").mkdir()
    config = make_config(tmp_path, sqlite(tmp_path), dlq={"type": "file", "path": str(tmp_path / "dlq")})
    result = conduitd("dlq", "list", "-c", str(config), "-r", "events")
    assert result.returncode == 2, result.stderr[-3000:]
    no_traceback(result)


# -- read commands write nothing ----------------------------------------------------------------
# In-process (`cli`: the same `main` the command runs) to keep these fast: five commands, twice.

READ_COMMANDS = [["validate"], ["checkpoints", "show"], ["dlq", "list", "-r", "events"], ["schema", "events"],
                 ["schema-compare", "events"]]


def test_read_commands_create_nothing_in_a_fresh_postgresql_schema(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                                 db: Db, cli: Any) -> None:
    write_input(tmp_path / "in", range(ROWS), bad=1)
    config = make_config(tmp_path, {"type": "postgres", "dsn": pg_dsn, "schema": pg_schema})
    for command in READ_COMMANDS:
        code, output = cli(*command, "-c", str(config))
        assert code in (0, 4), (command, output[-3000:])  # 4: schema-compare finds drift
        assert "Traceback" not in output
        created = db.fetch("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = $1", pg_schema)
        assert created == [], f"{command} created {[r[0] for r in created]}"


def test_read_commands_leave_a_sqlite_database_alone(tmp_path: Path, cli: Any) -> None:
    write_input(tmp_path / "in", range(ROWS), bad=1)
    database = tmp_path / "out.db"
    config = make_config(tmp_path, sqlite(tmp_path, database))
    for command in READ_COMMANDS:
        code, output = cli(*command, "-c", str(config))
        assert code in (0, 4), (command, output[-3000:])
        assert "Traceback" not in output
        assert not database.exists(), f"{command} created the database"
    assert cli("run", "--once", "-c", str(config))[0] == 0
    before = digest(database)
    for command in READ_COMMANDS:
        code, output = cli(*command, "-c", str(config))
        assert code in (0, 4), (command, output[-3000:])
        assert digest(database) == before, f"{command} changed the database"


# -- generated: a full disk under the DLQ loses and duplicates nothing --------------------------

_LINE = st.one_of(st.integers(0, 10**6).map(lambda i: ("row", i)),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
                  .map(lambda t: ("bad", "not json: " + t)))


@settings(max_examples=15)
@given(st.lists(_LINE, min_size=1, max_size=30))
def test_generated_input_with_a_full_disk_under_the_dlq_ends_once_in_the_table_or_the_dlq(
        tmp_path_factory: pytest.TempPathFactory, cli: Any, lines: list[tuple[str, object]]) -> None:
    tmp_path = tmp_path_factory.mktemp("full")
    (tmp_path / "in").mkdir()
    rows = [i for kind, i in lines if kind == "row"]
    bad = [str(t) for kind, t in lines if kind == "bad"]
    text = "".join((json.dumps({"id": item}) if kind == "row" else str(item)) + "\n" for kind, item in lines)
    (tmp_path / "in" / "a.jsonl").write_text(text)
    service = {"once_retry_timeout": "0.2s", "retry_max_wait": "0.1s"}
    database = tmp_path / "out.db"
    full = make_config(tmp_path, sqlite(tmp_path, database), service=service,
                       dlq={"type": "file", "path": "/dev/full"})
    code, output = cli("run", "--once", "-c", str(full))
    assert code == (5 if bad else 0), output[-3000:]  # rejects to store: the full disk is retried, then given up
    assert "Traceback" not in output
    if bad:
        assert "ENOSPC" in output and count_sqlite_or_zero(database) == 0
    dlq_file = tmp_path / "dlq.jsonl"
    good = make_config(tmp_path, sqlite(tmp_path, database), service=service,
                       dlq={"type": "file", "path": str(dlq_file)})
    code, output = cli("run", "--once", "-c", str(good))
    assert code == 0, output[-3000:]
    assert stored_ids(database) == sorted(rows)
    dead = [json.loads(line)["payload"] for line in dlq_file.read_text().splitlines()] if dlq_file.exists() else []
    # Compared stripped: the file source trims the whitespace around a line it dead-letters.
    assert sorted(d.strip() for d in dead) == sorted(b.strip() for b in bad)


def count_sqlite_or_zero(path: Path) -> int:
    return len(stored_ids(path)) if path.exists() else 0


def stored_ids(path: Path) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            return []  # no row was ever written
        return sorted(r[0] for r in conn.execute('SELECT id FROM "events"'))
    finally:
        conn.close()


@pytest.mark.parametrize("obstacle", ["manifest is a directory", "DLQ file in a read-only mount",
                                      "SQLite database in a missing directory", "SQLite database on a read-only mount"])
def test_validate_reports_an_output_the_run_could_not_write(tmp_path: Path, cli: Any, obstacle: str) -> None:
    write_input(tmp_path / "in", range(ROWS))
    with mounted_tmpfs(tmp_path / "ro") as ro:
        service: dict[str, Any] = {}
        dlq = None
        database = tmp_path / "out.db"
        if obstacle == "manifest is a directory":
            (tmp_path / "manifest").mkdir()
            service["manifest_path"] = str(tmp_path / "manifest")
        elif obstacle == "DLQ file in a read-only mount":
            dlq = {"type": "file", "path": str(ro / "dlq.jsonl")}
        elif obstacle == "SQLite database in a missing directory":
            database = tmp_path / "missing" / "out.db"
        else:
            database = ro / "out.db"
        remount_read_only(ro)
        config = make_config(tmp_path, sqlite(tmp_path, database), service=service, dlq=dlq)
        code, output = cli("validate", "-c", str(config))
        assert code == 2, output[-3000:]
        assert "cannot be written" in output and "Traceback" not in output
        code, output = cli("run", "--once", "-c", str(config))
        assert code == 2, output[-3000:]  # what validate said
    assert not (tmp_path / "missing").exists()
