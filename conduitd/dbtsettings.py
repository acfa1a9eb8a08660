"""`resources[].after_commit`: work run after a pipeline's data is committed. Its one kind today is
dbt (`after_commit.dbt`), run in a child process by `conduitd.ops.dbt`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.core.units import Duration, PositiveDuration


class DbtSettings(StrictModel):
    """`after_commit.dbt`: run a dbt command after committed batches (daemon) or after a run (--once).

    dbt always runs in a child process, never in the daemon's. A failing dbt run is reported (run
    manifest, /status, metrics, the `dbt` event) but never rolls back or fails the pipeline: the
    data it read is committed already. One dbt run at a time per pipeline."""

    project_dir: NonEmpty
    """The dbt project (passed as `--project-dir`); its `target/run_results.json` is read after each run."""
    profiles_dir: NonEmpty | None = None
    """Where `profiles.yml` is (`--profiles-dir`); default: dbt's own (DBT_PROFILES_DIR, the project, ~/.dbt)."""
    command: NonEmpty = "build"
    """The dbt command and its arguments, split like a shell does: `build --select tag:orders`."""
    every: PositiveDuration | Literal["after_run"] = "after_run"
    """`after_run`: only after a `--once` run. A duration (`10m`): in daemon mode after committed
    batches, at most once per that interval (the first soon after the first commit); under --once,
    after the run as well."""
    target: NonEmpty | None = None
    """The profile's target (`--target`); default: the profile's own."""
    executable: NonEmpty = "dbt"
    """The dbt program (a path, or a name looked up on PATH), e.g. a virtualenv's `bin/dbt`."""
    timeout: PositiveDuration | None = None
    """Longest one dbt run may take before it is stopped (and reported `timeout`); default: no limit."""
    fail_run_on_error: bool = False
    """Under --once, a dbt run that fails makes the run exit 1 (the data stays committed). Off by
    default: dbt's outcome is reported only."""
    run_when_nothing_committed: bool = False
    """Under --once, run dbt even when the run committed no batch (default: skip it, reported `skipped`)."""
    kill_after: Duration = Field(5.0)
    """When a dbt run must stop (timeout, daemon stop past `service.drain_timeout`), it is interrupted
    (SIGINT: dbt cancels its queries) and killed after this long if still running."""


class AfterCommitConfig(StrictModel):
    """`resources[].after_commit`: what runs after the pipeline's data is committed."""

    dbt: DbtSettings | None = None
    """Run dbt after commits (see `DbtSettings`)."""
