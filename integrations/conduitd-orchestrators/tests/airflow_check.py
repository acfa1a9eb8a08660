"""Airflow, for real: `airflow dags test` of a DAG with three ConduitdRunOperator tasks running
real conduitd pipelines (JSONL files into SQLite). `people` succeeds and its summary is the
XCom a downstream task reads; `strict` exits 3 (a quality rule with action fail) and fails at
once although it has retries; `unreachable` exits 5 and is retried. Run with the airflow venv's
python (scripts/orchestrator_venvs.sh airflow); exits non-zero with the reason when a check fails."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
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

    @task(task_id="record")
    def record(summary):
        Path({xcom!r}).write_text(json.dumps(summary))

    record(people.output)
'''


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="conduitd-airflow-"))
    config = scenario.make(root)
    held = scenario.hold_port()
    busy = scenario.make_busy(root, held.getsockname()[1])
    (root / "dags").mkdir()
    (root / "dags" / "conduitd_check.py").write_text(textwrap.dedent(DAG).format(
        config=str(config), busy=str(busy), xcom=str(root / "xcom.json")))
    env = {**os.environ, "AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    tested = subprocess.run([*airflow, "dags", "test", "conduitd_check"], env=env, capture_output=True, text=True)
    output = tested.stdout + tested.stderr
    (root / "dags_test.log").write_text(output)

    tries = _task_instances(root / "airflow" / "airflow.db")
    assert tries["people"][0] == "success", (tries, output[-3000:])
    assert tries["record"][0] == "success", tries
    scenario.check_people_summary(json.loads((root / "xcom.json").read_text()), root)
    # Exit 3 is not retriable: one try although the task has retries=2; the reason is logged.
    assert tries["strict"] == ("failed", 1), tries
    assert "conduitd exited 3" in output and "not_null:id" in output, output[-3000:]
    # Exit 5 is: the task's one retry was used.
    assert tries["unreachable"] == ("failed", 2), tries
    assert "conduitd exited 5" in output and "the port is in use" in output, output[-3000:]
    assert scenario.rows(root, "SELECT count(*) FROM sqlite_master WHERE name = 'strict'") == [(0,)]
    held.close()
    print(f"airflow: ok ({root})")


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
