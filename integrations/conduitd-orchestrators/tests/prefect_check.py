"""Prefect, for real, under `prefect_test_harness` (a temporary Prefect server and database):
the `conduitd_pipelines` flow runs the real `people` pipeline (JSONL into SQLite) and returns its
summary; the `conduitd_run` task's retries follow the exit codes: exit 3 (quality) is tried
once although retries are allowed, exit 5 (unreachable) is tried 1 + retries times. Run with the
prefect venv's python (scripts/orchestrator_venvs.sh prefect)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.testing.utilities import prefect_test_harness

import scenario
from conduitd_orchestrators import ConduitdRunFailed
from conduitd_orchestrators.prefect import conduitd_pipelines, conduitd_run

COUNTING = """import os, sys
with open({log!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
os.execv(sys.executable, [sys.executable, "-m", "conduitd", *sys.argv[1:]])
"""


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="conduitd-prefect-"))
    config = scenario.make(root)
    held = scenario.hold_port()
    busy = scenario.make_busy(root, held.getsockname()[1])
    # A command that notes each start of conduitd, then is conduitd: the attempts are counted.
    (root / "counting.py").write_text(COUNTING.format(log=str(root / "starts.log")))
    counting = (sys.executable, str(root / "counting.py"))

    @flow
    def attempts(config: str, pipeline: str) -> Any:
        return conduitd_run.with_options(retries=1, retry_delay_seconds=0)(pipeline, config=config, command=counting)

    with prefect_test_harness(server_startup_timeout=120):
        summaries = conduitd_pipelines(str(config), ["people"])
        scenario.check_people_summary(summaries["people"], root)

        failed = attempts(str(config), "strict", return_state=True)
        assert failed.is_failed(), failed
        error = failed.result(raise_on_failure=False)
        assert isinstance(error, ConduitdRunFailed) and error.exit_code == 3 and not error.retriable, error
        assert "not_null:id" in str(error), error
        assert _starts(root, "strict") == 1  # not retried

        failed = attempts(str(busy), "unreachable", return_state=True)
        error = failed.result(raise_on_failure=False)
        assert isinstance(error, ConduitdRunFailed) and error.exit_code == 5 and error.retriable, error
        assert "the port is in use" in str(error), error
        assert _starts(root, "unreachable") == 2  # 1 + retries=1

        flow_failed = conduitd_pipelines(str(config), ["strict"], retries=0, return_state=True)
        assert flow_failed.is_failed() and "exited 3" in str(flow_failed.result(raise_on_failure=False))
    held.close()
    shutil.rmtree(root, ignore_errors=True)  # kept when a check fails, to look into
    print("prefect: ok")


def _starts(root: Path, pipeline: str) -> int:
    lines = (root / "starts.log").read_text().splitlines()
    return sum(1 for line in lines if line.endswith(f"-p {pipeline}"))


if __name__ == "__main__":
    main()
