"""The `conduitd` command as operators use it: quickstart, exit codes, health endpoints, checkpoints."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, start_conduitd, write_config

ROOT = Path(__file__).resolve().parents[2]


def quickstart_env(tmp_path: Path) -> dict[str, str]:
    return {"CONDUITD_QUICKSTART_DB": str(tmp_path / "quickstart.db"),
            "CONDUITD_SAMPLE_DIR": str(ROOT / "config" / "sample"),
            "CONDUITD_QUICKSTART_MANIFEST": str(tmp_path / "manifest.jsonl")}


def test_quickstart_loads_the_sample_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    env = quickstart_env(tmp_path)
    first = conduitd("--once", "-c", str(ROOT / "config" / "quickstart.yaml"), env=env)
    assert first.returncode == 0, first.stderr
    db = sqlite3.connect(tmp_path / "quickstart.db")
    try:
        orders = db.execute("SELECT count(*), count(DISTINCT order_id) FROM orders").fetchone()
        dlq = db.execute("SELECT count(*) FROM orders_dlq").fetchone()[0]
        sample_lines = sum(len(f.read_text().splitlines()) for f in (ROOT / "config" / "sample").glob("*.jsonl"))
        assert orders[0] == orders[1] and orders[0] + dlq == sample_lines and dlq >= 5
        positions = db.execute("SELECT position FROM conduitd_checkpoints").fetchall()
        before = db.execute("SELECT count(*) FROM orders").fetchone()[0]
    finally:
        db.close()
    (record,) = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert (record["kind"], record["status"], record["exit_code"]) == ("run", "partial", 0)
    (pipeline,) = record["pipelines"]
    assert (pipeline["rows_read"], pipeline["rows_written"], pipeline["dlq_rows"]) == (
        sample_lines, orders[0], dlq)
    assert pipeline["dlq_rows_by_rule"] == {"decode": dlq}
    assert pipeline["schema_changes"][0]["change"] == "create"
    second = conduitd("--once", "-c", str(ROOT / "config" / "quickstart.yaml"), env=env)
    assert second.returncode == 0, second.stderr
    assert "0 records read, 0 rows written" in second.stderr
    db = sqlite3.connect(tmp_path / "quickstart.db")
    try:
        assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == before
        assert db.execute("SELECT position FROM conduitd_checkpoints").fetchall() == positions
    finally:
        db.close()


def test_checkpoints_show_and_reset(tmp_path: Path) -> None:
    env = quickstart_env(tmp_path)
    config = str(ROOT / "config" / "quickstart.yaml")
    assert conduitd("--once", "-c", config, env=env).returncode == 0
    shown = conduitd("checkpoints", "show", "-c", config, "--json", env=env)
    assert shown.returncode == 0
    rows = json.loads(shown.stdout)
    assert {Path(r["partition"]).name for r in rows} == {"orders-0001.jsonl", "orders-0002.jsonl"}
    assert all(r["position"]["offset"] > 0 for r in rows)
    assert conduitd("checkpoints", "reset", "-c", config, env=env).returncode == 2  # -r is required
    reset = conduitd("checkpoints", "reset", "-c", config, "-r", "orders", env=env)
    assert reset.returncode == 0 and "removed 2 checkpoint(s)" in reset.stdout
    again = conduitd("--once", "-c", config, env=env)  # upsert: reading everything again changes nothing
    assert again.returncode == 0 and "3006 records read" in again.stderr


def pg_config(tmp_path: Path, dsn: str, schema: str, **service: Any) -> Path:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    (data / "a.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(100)))
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", **service},
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl"), "poll_interval": "0.1s"}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "events", "source": "s", "destination": "pg", "batch": {"max_wait": "0.1s"}}],
    })


def test_validate_exits_0_when_reachable_and_5_when_not(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    ok = conduitd("validate", "-c", str(pg_config(tmp_path, pg_dsn, pg_schema)))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 file(s) match" in ok.stdout and "reachable" in ok.stdout
    bad = conduitd("validate", "-c", str(pg_config(tmp_path, "postgresql://u:topsecret@127.0.0.1:1/x", pg_schema)))
    assert bad.returncode == 5
    assert "topsecret" not in bad.stdout + bad.stderr


def test_once_against_an_unreachable_database_exits_5(tmp_path: Path, pg_schema: str) -> None:
    config = pg_config(tmp_path, "postgresql://u:topsecret@127.0.0.1:1/x", pg_schema, once_retry_timeout="1s")
    result = conduitd("--once", "-c", str(config), timeout=60)
    assert result.returncode == 5, result.stderr
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/x" in result.stderr
    assert "topsecret" not in result.stderr


def test_once_gives_up_at_its_retry_deadline_not_a_backoff_after_it(tmp_path: Path, pg_schema: str) -> None:
    """The waits between retries, as logged, add up to `once_retry_timeout` (a last backoff of up
    to 1.5x the doubled delay used to be slept past it: 59 s for a 30 s timeout)."""
    config = pg_config(tmp_path, "postgresql://u:x@127.0.0.1:1/x", pg_schema, once_retry_timeout="5s")
    result = conduitd("--once", "-c", str(config), timeout=60)
    assert result.returncode == 5, result.stderr
    waits = [float(m) for m in re.findall(r"retrying in ([0-9.]+)s", result.stderr)]
    assert len(waits) >= 3
    assert sum(waits) <= 5 + 0.06 * len(waits), waits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_endpoints_while_the_daemon_runs(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    port = free_port()
    config = pg_config(tmp_path, pg_dsn, pg_schema, health_port=port)
    daemon = start_conduitd("-c", str(config), log=tmp_path / "log")
    try:
        deadline = time.monotonic() + 20
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                code, body = get(f"http://127.0.0.1:{port}/status")
                status = json.loads(body)["pipelines"][0]
                if status["rows_written"] == 100:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        assert status["rows_written"] == 100 and status["state"] == "running" and status["ready"] is True
        assert status["last_commit"] is not None and status["dlq_rows"] == 0
        assert [p["offset"] for p in status["positions"].values()] == [(tmp_path / "in" / "a.jsonl").stat().st_size]
        assert "postgres:" not in json.dumps(status)  # no DSN, no password
        assert get(f"http://127.0.0.1:{port}/livez") == (200, "ok\n")
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        code, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert 'conduitd_rows_written_total{pipeline="events"} 100.0' in metrics
        assert 'conduitd_commit_seconds_bucket{le="+Inf",pipeline="events"}' in metrics
        assert 'conduitd_pipeline_ready{pipeline="events"} 1.0' in metrics

        second = conduitd("-c", str(config), timeout=30)  # the same port again: a clear error, exit 5
        assert second.returncode == 5
        assert f"127.0.0.1:{port}: the port is in use" in second.stderr
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0


def test_health_port_0_picks_a_free_port_and_logs_it(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    result = conduitd("--once", "-c", str(pg_config(tmp_path, pg_dsn, pg_schema, health_port=0)))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (served,) = [line for line in lines if line["message"].startswith("health endpoints on http://127.0.0.1:")]
    assert not served["message"].startswith("health endpoints on http://127.0.0.1:0 ")


def test_progress_is_logged_not_drawn_when_not_a_terminal(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    result = conduitd("--once", "-c", str(pg_config(tmp_path, pg_dsn, pg_schema)))
    assert result.returncode == 0
    assert "\r" not in result.stderr
    summary = [json.loads(line) for line in result.stderr.splitlines() if "records read" in line]
    assert summary and summary[0]["pipeline"] == "events"


@pytest.mark.parametrize("args", [["--version"], ["validate", "--help"]])
def test_version_and_help(args: list[str]) -> None:
    result = conduitd(*args)
    assert result.returncode == 0 and (result.stdout.startswith("conduitd ") or "usage" in result.stdout)


def test_progress_line_in_a_terminal(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    big = tmp_path / "in"
    big.mkdir()
    (big / "a.jsonl").write_text("".join(json.dumps({"id": i, "pad": "x" * 200}) + "\n" for i in range(300_000)))
    config = write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": str(big / "*.jsonl")}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
        "resources": [{"name": "events", "source": "s", "destination": "db", "batch": {"max_rows": 5000}}],
    })
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "conduitd", "--once", "-c", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(60) == 0
    finally:
        os.close(controller)
    text = output.decode(errors="replace")
    assert "\r" in text and "records/s" in text and "to the DLQ" in text
