"""Prefect tasks and flows for bounded conduitd runs. Retries follow the exit codes: a run that
exited 5 (a dependency unreachable) is retried up to the task's `retries`; 1-4 (runtime, config,
quality, schema) fail at once, since the same input fails the same way again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, task
from prefect.client.schemas.objects import TaskRun
from prefect.logging import get_run_logger
from prefect.states import State

from conduitd_orchestrators.local import DEFAULT_COMMAND, run_local
from conduitd_orchestrators.remote import run_remote
from conduitd_orchestrators.summary import ConduitdRunFailed


def retry_on_exit_5(_task: Any, _task_run: TaskRun, state: State[Any]) -> bool:
    """`retry_condition_fn`: retry only a ConduitdRunFailed that is retriable (exit 5)."""
    failure = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(failure, ConduitdRunFailed) and failure.retriable


@task(name="conduitd-run", retries=3, retry_delay_seconds=30, retry_condition_fn=retry_on_exit_5,
      task_run_name="conduitd-{pipeline}")
def conduitd_run(pipeline: str, config: str | None = None, manifest_path: str | None = None,
                 command: Sequence[str] = DEFAULT_COMMAND, timeout: float | None = None,
                 base_url: str | None = None, token: str | None = None, idempotency_key: str | None = None,
                 poll_interval: float = 2.0) -> dict[str, Any]:
    """Run `pipeline` once and return its summary (a dict). Locally with `config` (the config's
    `service.manifest_path` or `manifest_path` is where the summary is read), or on a daemon with
    `base_url` and `token`. A non-zero exit raises ConduitdRunFailed (exit code and reason);
    change the retries with `conduitd_run.with_options(retries=..., retry_delay_seconds=...)`."""
    logger = get_run_logger()
    if (config is None) == (base_url is None):
        raise ValueError("give config (a local run) or base_url and token (a run on a daemon), not both")
    try:
        if config is not None:
            summary = run_local(config, pipeline, manifest_path=manifest_path, command=command, timeout=timeout)
        else:
            summary = run_remote(str(base_url), token or "", pipeline, idempotency_key=idempotency_key,
                                 poll_interval=poll_interval, timeout=timeout)
    except ConduitdRunFailed as failed:
        logger.error("%s%s", failed, " (retriable)" if failed.retriable else "")
        raise
    logger.info("pipeline %s: %d rows read, %d written, %d to the DLQ", summary.pipeline, summary.rows_read,
                summary.rows_written, summary.dlq_rows)
    return summary.as_dict()


@flow(name="conduitd-pipelines")
def conduitd_pipelines(config: str, pipelines: list[str], manifest_path: str | None = None,
                       retries: int = 3, retry_delay_seconds: float = 30) -> dict[str, dict[str, Any]]:
    """Run each of `pipelines` of the config once, one after the other (they may share a
    destination file), and return their summaries by name. Every pipeline is attempted; the flow
    then fails with the first failure (its exit code and reason)."""
    runner = conduitd_run.with_options(retries=retries, retry_delay_seconds=retry_delay_seconds)
    summaries: dict[str, dict[str, Any]] = {}
    failures: list[ConduitdRunFailed] = []
    for name in pipelines:
        state = runner(name, config=config, manifest_path=manifest_path, return_state=True)
        if state.is_completed():
            summaries[name] = state.result()
        else:
            failure = state.result(raise_on_failure=False)
            failures.append(failure if isinstance(failure, ConduitdRunFailed)
                            else ConduitdRunFailed(1, f"{name}: {failure}"))
    if failures:
        raise failures[0]
    return summaries
