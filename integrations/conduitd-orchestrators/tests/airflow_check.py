"""Airflow, for real: `airflow dags test` of a DAG with three ConduitdRunOperator tasks running
real conduitd pipelines (JSONL files into SQLite). `people` succeeds and its summary is the
XCom a downstream task reads; `strict` exits 3 (a quality rule with action fail) and fails at
once although it has retries; `unreachable` exits 5 and is retried; `remote` is a deferred run
on a conduitd daemon's control plane, polled by the trigger. Run with the airflow venv's
python (scripts/orchestrator_venvs.sh airflow); exits non-zero with the reason when a check fails."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import scenario

DAG = '''
import datetime, json
from pathlib import Path
from airflow.sdk import DAG, task
from conduitd_orchestrators.airflow import ConduitdRunOperator

with DAG("conduitd_check", start_date=datetime.datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    people = ConduitdRunOperator(task_id="people", config={config!r}, pipeline="people")
    ConduitdRunOperator(task_id="strict", config={config!r}, pipeline="strict", retries=2,
                        retry_delay=datetime.timedelta(0))
    ConduitdRunOperator(task_id="unreachable", config={busy!r}, pipeline="unreachable", retries=1,
                        retry_delay=datetime.timedelta(0))
    remote = ConduitdRunOperator(task_id="remote", base_url={base_url!r}, token={token!r}, pipeline="remote",
                                 deferrable=True, poll_interval=0.2)

    @task(task_id="record")
    def record(summary, remote_summary):
        Path({xcom!r}).write_text(json.dumps([summary, remote_summary]))

    record(people.output, remote.output)
'''


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="conduitd-airflow-"))
    config = scenario.make(root)
    held = scenario.hold_port()
    busy = scenario.make_busy(root, held.getsockname()[1])
    port, token = _api_config(root)
    base_url = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen([sys.executable, "-m", "conduitd", "-c", str(root / "api.yml"), "-p", "keepalive"],
                              stdout=subprocess.DEVNULL, stderr=open(root / "daemon.log", "w"))  # noqa: SIM115
    (root / "dags").mkdir()
    (root / "dags" / "conduitd_check.py").write_text(textwrap.dedent(DAG).format(
        config=str(config), busy=str(busy), xcom=str(root / "xcom.json"), base_url=base_url, token=token))
    env = {**os.environ, "AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    airflow = [sys.executable, "-m", "airflow"]
    try:
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        _wait_for_api(base_url, token, daemon, root)
        tested = subprocess.run([*airflow, "dags", "test", "conduitd_check"], env=env, capture_output=True,
                                text=True)
    finally:
        daemon.terminate()
        daemon.wait(60)
    output = tested.stdout + tested.stderr
    (root / "dags_test.log").write_text(output)

    tries = _task_instances(root / "airflow" / "airflow.db")
    assert tries["people"][0] == "success", (tries, output[-3000:])
    assert tries["record"][0] == "success", tries
    people, remote = json.loads((root / "xcom.json").read_text())
    scenario.check_people_summary(people, root)
    # The deferred run: the triggerer polled the daemon's run to its end.
    assert tries["remote"] == ("success", 1), tries
    assert "running trigger in line" in output, output[-3000:]
    assert (remote["mode"], remote["pipeline"], remote["exit_code"], remote["rows_written"]) == (
        "remote", "remote", 0, 4), remote
    assert scenario.rows(root, "SELECT count(*) FROM remote_people") == [(4,)]
    # Exit 3 is not retriable: one try although the task has retries=2; the reason is logged.
    assert tries["strict"] == ("failed", 1), tries
    assert "conduitd exited 3" in output and "not_null:id" in output, output[-3000:]
    # Exit 5 is: the task's one retry was used.
    assert tries["unreachable"] == ("failed", 2), tries
    assert "conduitd exited 5" in output and "the port is in use" in output, output[-3000:]
    assert scenario.rows(root, "SELECT count(*) FROM sqlite_master WHERE name = 'strict'") == [(0,)]
    held.close()
    shutil.rmtree(root, ignore_errors=True)  # kept when a check fails, to look into
    print("airflow: ok")


def _api_config(root: Path) -> tuple[int, str]:
    """api.yml: the scenario's pipelines on a daemon with the control plane on a free port, which
    runs `keepalive` only (so `remote` is idle and can be run); an operator token for it."""
    from conduitd.api.tokens import hash_token, new_token

    token = new_token()
    (root / "tokens.yml").write_text(json.dumps({"tokens": [
        {"name": "airflow", "sha256": hash_token(token), "role": "operator", "projects": ["*"]}]}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = json.loads((root / "conduitd.yml").read_text())
    config["service"] = {"api": {"port": port, "tokens_file": str(root / "tokens.yml")}}
    config["resources"] = [
        {"name": "remote", "source": "people_files", "destination": "warehouse", "table": "remote_people"},
        {"name": "keepalive", "source": "people_files", "destination": "warehouse", "table": "keepalive"}]
    (root / "api.yml").write_text(json.dumps(config))
    return port, token


def _wait_for_api(base_url: str, token: str, daemon: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 60
    request = urllib.request.Request(f"{base_url}/api/v1/pipelines", headers={"Authorization": f"Bearer {token}"})
    while True:
        assert daemon.poll() is None, (root / "daemon.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, "the daemon's API did not answer within 60 s"
            time.sleep(0.1)


def _task_instances(db: Path) -> dict[str, tuple[str, int]]:
    connection = sqlite3.connect(db)
    try:
        found = connection.execute("SELECT task_id, state, try_number FROM task_instance "
                                   "WHERE dag_id = 'conduitd_check'").fetchall()
    finally:
        connection.close()
    return {task_id: (state, try_number) for task_id, state, try_number in found}


if __name__ == "__main__":
    main()
