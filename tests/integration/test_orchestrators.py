"""The orchestrator integrations (integrations/conduitd-orchestrators) with the real libraries,
each in its own cached venv made by scripts/orchestrator_venvs.sh (the first run makes them, a
minute or so; later runs reuse them), running real conduitd pipelines (JSONL files into
SQLite): Airflow's `dags test`, Prefect's `prefect_test_harness`, Dagster's `materialize`. The
checks themselves are integrations/conduitd-orchestrators/tests/*_check.py, run in the venv with
this checkout on PYTHONPATH. The remote client (the control-plane API) runs here, against a
daemon with `service.api`."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import serving

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "integrations" / "conduitd-orchestrators"


def venv_python(name: str) -> str:
    """The python of the orchestrator's cached venv (made now if it does not exist)."""
    made = subprocess.run(["bash", str(ROOT / "scripts" / "orchestrator_venvs.sh"), name], capture_output=True,
                          text=True, timeout=1200, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    return made.stdout.strip().splitlines()[-1]


def run_check(name: str) -> str:
    """Run integrations/conduitd-orchestrators/tests/<name>_check.py in the venv; its output."""
    python = venv_python(name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, INTEGRATION / "src",
                                                                        INTEGRATION / "tests")),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"}
    checked = subprocess.run([python, str(INTEGRATION / "tests" / f"{name}_check.py")], capture_output=True,
                             text=True, timeout=300, check=False, env=env, cwd=INTEGRATION / "tests")
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output[-6000:]
    assert f"{name}: ok" in checked.stdout, output[-3000:]
    return output


def test_airflow_operator_returns_the_summary_as_xcom_and_fails_by_exit_code() -> None:
    run_check("airflow")


def test_prefect_task_and_flow_return_summaries_and_retry_only_exit_5() -> None:
    run_check("prefect")


def test_dagster_assets_carry_run_metadata_and_quality_checks() -> None:
    run_check("dagster")


def client() -> Any:
    """conduitd_orchestrators from the checkout (it is not installed in the main environment)."""
    sys.path.insert(0, str(INTEGRATION / "src"))
    try:
        return importlib.import_module("conduitd_orchestrators")
    finally:
        sys.path.remove(str(INTEGRATION / "src"))


async def test_the_remote_client_runs_a_pipeline_through_the_control_plane(tmp_path: Path) -> None:
    orchestrators = client()
    for name, rows in (("a", [{"id": i} for i in range(5)]), ("b", [{"id": 1}, {"id": None}])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "sources": [{"name": n, "type": "file", "path": str(tmp_path / n), "format": "jsonl"} for n in ("a", "b")],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
        "resources": [{"name": "good", "source": "a", "destination": "db", "project": "a"},
                      {"name": "strict", "source": "b", "destination": "db", "project": "a",
                       "quality_checks": [{"column": "id", "check": "not_null", "action": "fail"}]},
                      {"name": "other", "source": "a", "destination": "db", "project": "b"}],
    }
    async with serving(tmp_path, config, only=("other",)) as daemon:  # good and strict idle
        token = daemon.tokens["operator-a"]

        def run(pipeline: str, who: str = "operator-a") -> Any:
            return orchestrators.run_remote(daemon.base, daemon.tokens[who], pipeline, poll_interval=0.05,
                                            timeout=60)

        summary = await asyncio.to_thread(run, "good")
        assert (summary.pipeline, summary.exit_code, summary.rows_written, summary.mode) == ("good", 0, 5, "remote")
        assert summary.run_id

        with pytest.raises(orchestrators.ConduitdRunFailed) as quality:
            await asyncio.to_thread(run, "strict")
        assert quality.value.exit_code == 3 and not quality.value.retriable
        assert "not_null:id" in quality.value.reason

        with pytest.raises(orchestrators.ConduitdRunFailed) as refused:
            await asyncio.to_thread(run, "good", "viewer-a")  # a viewer may not start runs
        assert refused.value.exit_code == 2 and "HTTP 403" in refused.value.reason

        key = "orchestrator-run-1"
        first = await asyncio.to_thread(orchestrators.remote.start_run, daemon.base, token, "good",
                                        idempotency_key=key)
        again = await asyncio.to_thread(orchestrators.remote.start_run, daemon.base, token, "good",
                                        idempotency_key=key)
        assert first.run_id == again.run_id  # a retried request is the same run

    with pytest.raises(orchestrators.ConduitdRunFailed) as gone:
        await asyncio.to_thread(orchestrators.run_remote, daemon.base, token, "good", timeout=5)
    assert gone.value.exit_code == 5 and gone.value.retriable
