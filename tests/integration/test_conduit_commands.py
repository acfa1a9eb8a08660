"""The `conduit` command as a Conduit Core user runs it, in a subprocess: `run` is a batch run
that exits, `--daemon` runs until SIGTERM, `--dry-run` writes nothing (PostgreSQL dumped before
and after, SQLite compared byte for byte), the pre-flight stops a run before it reads, and a
missing input file is an error."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import write_config

CONDUIT = "import sys; sys.argv[0] = 'conduit'; from conduitd.cli import main; raise SystemExit(main())"
"""What the `conduit` console script runs (it points at conduitd.cli:entry, which runs conduitd.cli:main
under that name)."""


def conduit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CONDUIT, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                          check=False)


def file_to_sqlite(tmp_path: Path, **pipeline: Any) -> Path:
    (tmp_path / "people.csv").write_text("id,name,zip\n1,ann,00501\n2,bob,00502\n,nobody,3\n")
    return write_config(tmp_path / "pipeline.yml", {
        "service": {"manifest_path": str(tmp_path / "manifest.jsonl")},
        "sources": [{"name": "people_csv", "type": "file", "path": str(tmp_path / "people.csv")}],
        "destinations": [{"name": "local", "type": "sqlite", "path": str(tmp_path / "out.db")}],
        "resources": [{"name": "people", "source": "people_csv", "destination": "local",
                       "quality_checks": [{"column": "id", "check": "not_null", "action": "dlq"}], **pipeline}]})


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("spelling", [["pipeline.yml"], ["-c", "pipeline.yml"], ["-f", "pipeline.yml"]])
def test_conduit_run_loads_and_exits(tmp_path: Path, spelling: list[str]) -> None:
    file_to_sqlite(tmp_path)
    result = conduit("run", *spelling, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "out.db", "SELECT id, name, zip FROM people ORDER BY id") == [
        (1, "ann", "00501"), (2, "bob", "00502")]
    assert rows(tmp_path / "out.db", "SELECT count(*) FROM people_dlq") == [(1,)]
    (record,) = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert record["kind"] == "run"


def test_conduit_run_uses_ingest_yml_by_default(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path).rename(tmp_path / "ingest.yml")
    result = conduit("run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "out.db", "SELECT count(*) FROM people") == [(2,)]


def test_conduit_run_daemon_runs_until_sigterm(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", CONDUIT, "run", "pipeline.yml", "--daemon"], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out.db").exists() or not _loaded(tmp_path / "out.db"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with (tmp_path / "people.csv").open("a") as more:  # a daemon reads what is appended
            more.write("3,cy,00503\n")
        while rows(tmp_path / "out.db", "SELECT count(*) FROM people") != [(3,)]:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _loaded(db: Path) -> bool:
    try:
        return rows(db, "SELECT count(*) FROM people") == [(2,)]
    except sqlite3.OperationalError:  # the table is not there yet
        return False


def test_a_missing_input_file_is_an_error(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    (tmp_path / "people.csv").unlink()
    for extra in ([], ["--skip-preflight"]):
        result = conduit("run", "pipeline.yml", *extra, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "people.csv" in result.stderr and "does not exist" in result.stderr
    assert not rows(tmp_path / "out.db", "SELECT name FROM sqlite_master WHERE name = 'people'") \
        if (tmp_path / "out.db").exists() else True


def test_a_failing_preflight_stops_the_run_before_it_reads(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    config = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "pipeline.yml").read_text())))
    # A second pipeline whose database is not a SQLite file: the first must not load either.
    (tmp_path / "not-a-db").write_text("hello\n" * 200)
    config["destinations"].append({"name": "broken", "type": "sqlite", "path": str(tmp_path / "not-a-db")})
    config["resources"].append({"name": "copy", "source": "people_csv", "destination": "broken"})
    write_config(tmp_path / "pipeline.yml", config)
    result = conduit("run", "pipeline.yml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "pre-flight: copy" in result.stderr and "not-a-db" in result.stderr
    assert not (tmp_path / "out.db").exists()  # nothing read, nothing written
    shown = conduit("preflight", "pipeline.yml", cwd=tmp_path)
    assert shown.returncode == 2
    assert "FAIL" in shown.stdout and "PASS" in shown.stdout and "Preflight failed" in shown.stdout


def test_preflight_passes_on_a_good_config(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    result = conduit("preflight", "pipeline.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout and "FAIL" not in result.stdout
    assert not (tmp_path / "out.db").exists()


def test_dry_run_leaves_sqlite_byte_identical(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    assert conduit("run", "pipeline.yml", cwd=tmp_path).returncode == 0
    with (tmp_path / "people.csv").open("a") as more:
        more.write("3,cy,00503\n,again,4\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in ("out.db", "manifest.jsonl")}
    result = conduit("run", "pipeline.yml", "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    # Resumed from the checkpoint: only the two appended records.
    assert (outcome["records_read"], outcome["rows_written"], outcome["rejected_by_rule"]) == (
        2, 1, {"not_null:id": 1})
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in ("out.db", "manifest.jsonl")}
    assert after == before
    # SQLite's read-only open of a WAL database may leave an empty -wal (and its -shm index): no data.
    assert not (tmp_path / "out.db-wal").exists() or (tmp_path / "out.db-wal").stat().st_size == 0


def _pg_dump(dsn: str, schema: str) -> str:
    dump = subprocess.run(["pg_dump", "--schema", schema, "--no-owner", "-d", dsn], capture_output=True, text=True,
                          check=True, timeout=60)
    # pg_dump 17.6+ brackets its output with \\restrict KEY / \\unrestrict KEY, a new random key each time.
    return "".join(line for line in dump.stdout.splitlines(keepends=True)
                   if not line.startswith(("\\restrict ", "\\unrestrict ")))


def test_dry_run_leaves_postgres_identical_and_reports_the_plan(tmp_path: Path, pg_dsn: str,
                                                                pg_schema: str) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps({"id": i, "amount": i * 10}) + "\n" for i in range(5)))
    write_config(tmp_path / "pipeline.yml", {
        "sources": [{"name": "files", "type": "file", "path": str(data)}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "orders", "source": "files", "destination": "wh", "mode": "upsert",
                       "unique_key": ["id"],
                       "quality_checks": [{"column": "amount", "check": "range", "min": 0, "action": "dlq"}]}]})
    assert conduit("run", "pipeline.yml", cwd=tmp_path).returncode == 0
    (data / "b.jsonl").write_text(
        json.dumps({"id": 10, "amount": 5, "note": "new column"}) + "\n"
        + json.dumps({"id": 11, "amount": -1}) + "\n" + "{not json\n")
    before = _pg_dump(pg_dsn, pg_schema)
    result = conduit("run", "pipeline.yml", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "records read:       3" in result.stdout and "rows to write:      1" in result.stdout
    assert "rows to the DLQ:    2" in result.stdout and "decode 1" in result.stdout
    assert "would apply: ALTER TABLE" in result.stdout and '"note"' in result.stdout
    assert _pg_dump(pg_dsn, pg_schema) == before
    # The same plan, for real.
    assert conduit("run", "pipeline.yml", cwd=tmp_path).returncode == 0
    assert _pg_dump(pg_dsn, pg_schema) != before


def test_dry_run_of_a_missing_table_creates_nothing(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": 1}) + "\n")
    write_config(tmp_path / "pipeline.yml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "a.jsonl")}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": pg_dsn, "schema": f"{pg_schema}_new"}],
        "resources": [{"name": "orders", "source": "files", "destination": "wh"}]})
    result = conduit("run", "pipeline.yml", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the table does not exist yet" in result.stdout and "would apply: CREATE TABLE" in result.stdout
    assert f"{pg_schema}_new" not in _pg_dump(pg_dsn, f"{pg_schema}*")


def test_conduit_manifest_after_runs(tmp_path: Path) -> None:
    file_to_sqlite(tmp_path)
    assert conduit("run", "pipeline.yml", cwd=tmp_path).returncode == 0
    strict = file_to_sqlite(tmp_path, quality_checks=[{"column": "id", "check": "not_null", "action": "fail"}])
    with (tmp_path / "people.csv").open("a") as more:
        more.write(",late,9\n")
    assert conduit("run", str(strict), cwd=tmp_path).returncode == 3
    listed = conduit("manifest", "-c", "pipeline.yml", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [e["status"] for e in json.loads(listed.stdout)] == ["partial", "failed"]
    failed = conduit("manifest", "-m", str(tmp_path / "manifest.jsonl"), "--failed", "-p", "people", cwd=tmp_path)
    assert failed.returncode == 0 and "failed" in failed.stdout and "1 entry" in failed.stdout
    assert "0 records read" not in failed.stdout


def test_migrate_config_prints_a_native_config_that_loads(tmp_path: Path) -> None:
    """`conduit migrate-config seed.yml`: the seed config in conduitd's own keys, each change commented;
    the printed config loads as it is and runs the same pipeline."""
    from conduitd.configfile import load_config

    (tmp_path / "people.csv").write_text("id,name\n1,ann\n2,NULL\n")
    (tmp_path / "seed.yml").write_text(
        "version: '1.0'\n"
        f"sources:\n  - {{name: src, type: csv, path: {tmp_path / 'people.csv'}}}\n"
        f"destinations:\n  - {{name: out, type: sqlite, path: {tmp_path / 'out.db'}, write_mode: merge, "
        "primary_keys: [id]}\n"
        "resources:\n  - {name: people, source: src, destination: out, query: n/a}\n")
    done = conduit("migrate-config", "seed.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    native = tmp_path / "native.yml"
    native.write_text(done.stdout)
    assert "`write_mode` is `mode`" in done.stdout and "`type: csv` is `type: file`" in done.stdout
    config = load_config(native)
    assert config.resources[0].mode == "upsert" and config.resources[0].unique_key == ("id",)
    assert config == load_config(tmp_path / "seed.yml")
    ran = conduit("run", "native.yml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert rows(tmp_path / "out.db", "SELECT id, name FROM people ORDER BY id") == [(1, "ann"), (2, None)]
