"""Dagster, for real: `materialize` of the assets `conduitd_assets` builds from a conduitd config
(JSONL files into SQLite). The `people` table's materialization carries the run's rows, rejects,
positions and schema changes, and each of its quality rules is an asset check: `range:age` (dlq)
fails with ERROR, `not_null:name` (warn) fails with WARN, `not_null:id` passes. The `strict`
table's run exits 3: the step fails with conduitd's reason and is not retried under a retry
policy, while a run that exits 5 (its health port held) is. Run with the
dagster venv's python (scripts/orchestrator_venvs.sh dagster)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dagster as dg

import scenario
from conduitd_orchestrators.dagster import conduitd_assets


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="conduitd-dagster-"))
    config = scenario.make(root)
    assets = conduitd_assets(config, pipelines=["people", "strict"], retry_policy=dg.RetryPolicy(max_retries=1))
    keys = sorted(k.to_user_string() for a in assets for k in a.keys)
    assert keys == ["conduitd/warehouse/people", "conduitd/warehouse/strict"], keys
    people_key = dg.AssetKey(["conduitd", "warehouse", "people"])

    with dg.instance_for_test() as instance:
        result = dg.materialize([a for a in assets if people_key in a.keys], instance=instance)
        assert result.success
        [materialization] = result.asset_materializations_for_node("conduitd__warehouse__people")
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        assert (metadata["rows_read"], metadata["rows_written"], metadata["rejects"]) == (4, 3, 1), metadata
        summary = {"pipeline": "people", "exit_code": 0, "status": metadata["status"], "rows_read": 4,
                   "rows_written": metadata["rows_written"], "dlq_rows": metadata["rejects"],
                   "quality": metadata["quality"], "positions_before": metadata["positions_before"],
                   "positions_after": metadata["positions_after"], "schema_changes": metadata["schema_changes"]}
        scenario.check_people_summary(summary, root)
        checks = {e.check_name: (e.passed, e.severity.value, e.metadata["violations"].value)
                  for e in result.get_asset_check_evaluations()}
        assert checks == {"range_age": (False, "ERROR", 1), "not_null_name": (False, "WARN", 1),
                          "not_null_id": (True, "ERROR", 0)}, checks

        failed = dg.materialize([a for a in assets if people_key not in a.keys], instance=instance,
                                raise_on_error=False)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        error = failure.step_failure_data.error
        user = failure.step_failure_data.user_failure_data
        assert error is not None and "conduitd exited 3" in error.message and "not_null:id" in error.message, error
        assert user is not None and user.metadata["exit_code"].value == 3, user
        assert scenario.rows(root, "SELECT count(*) FROM sqlite_master WHERE name = 'strict'") == [(0,)]
        assert _retries(failed) == 0  # exit 3: the retry policy is not used

        held = scenario.hold_port()
        busy = scenario.make_busy(root, held.getsockname()[1])
        unreachable = conduitd_assets(busy, pipelines=["unreachable"], retry_policy=dg.RetryPolicy(max_retries=1))
        failed = dg.materialize(unreachable, instance=instance, raise_on_error=False)
        assert not failed.success
        assert _retries(failed) == 1  # exit 5: retried once, as the policy allows
        held.close()
    shutil.rmtree(root, ignore_errors=True)  # kept when a check fails, to look into
    print("dagster: ok")


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)


if __name__ == "__main__":
    main()
