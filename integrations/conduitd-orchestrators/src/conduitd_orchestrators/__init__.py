"""Run conduitd pipelines from orchestrators. The shared client runs a bounded run locally
(`run_local`: a subprocess, its summary read from the run manifest) or on a daemon's control
plane (`run_remote`); `conduitd_orchestrators.airflow`, `.prefect` and `.dagster` build on it."""

from conduitd_orchestrators.local import run_local
from conduitd_orchestrators.remote import run_remote
from conduitd_orchestrators.summary import EXIT_MEANINGS, RETRIABLE_EXIT_CODES, ConduitdRunFailed, RunSummary

__all__ = ["EXIT_MEANINGS", "RETRIABLE_EXIT_CODES", "ConduitdRunFailed", "RunSummary", "run_local", "run_remote"]
