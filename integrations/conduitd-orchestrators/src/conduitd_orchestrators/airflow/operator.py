"""The Airflow operator: one bounded run of one pipeline per task instance, locally (a
subprocess on the worker) or remotely (the daemon's control plane), its summary returned as the
task's XCom. A non-zero exit fails the task with conduitd's reason; only exit 5 (a dependency
unreachable) is left to the task's `retries`, 1-4 fail at once without retrying. A remote run
can be deferred (`deferrable=True`): the worker starts it and the triggerer polls for its end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

try:  # Airflow 3
    from airflow.sdk import BaseOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef]
    from airflow.models import BaseOperator  # type: ignore[no-redef]

from conduitd_orchestrators.airflow.trigger import ConduitdRunTrigger
from conduitd_orchestrators.local import DEFAULT_COMMAND, run_local
from conduitd_orchestrators.remote import finish, run_remote, start_run
from conduitd_orchestrators.summary import ConduitdRunFailed, RunSummary


class ConduitdRunOperator(BaseOperator):  # type: ignore[misc]
    """Run `pipeline` once and push its summary (a dict: counts, quality, positions, schema
    changes, exit_code) as the return-value XCom.

    Local mode (default): `config` is the conduitd config file on the worker; the config's
    `service.manifest_path` (or `manifest_path`) must be set, since the summary is read from it.
    Remote mode: give `base_url` and `token` (an operator token of the daemon's `service.api`);
    the run is started with an Idempotency-Key made of the DAG run, task and try, so a retried
    request never starts a second run. With `deferrable=True` the task defers to
    ConduitdRunTrigger while the run goes on (remote mode only)."""

    template_fields: Sequence[str] = ("config", "pipeline", "manifest_path", "base_url", "token")
    ui_color = "#c9e4f5"

    def __init__(self, *, pipeline: str, config: str | None = None, manifest_path: str | None = None,
                 command: Sequence[str] = DEFAULT_COMMAND, env: Mapping[str, str] | None = None,
                 run_timeout: float | None = None, base_url: str | None = None, token: str | None = None,
                 poll_interval: float = 2.0, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (config is None) == (base_url is None):
            raise ValueError("give config (a local run) or base_url and token (a run on a daemon), not both")
        if deferrable and base_url is None:
            raise ValueError("deferrable=True needs a remote run (base_url and token): a local run is this process")
        self.deferrable = deferrable
        self.pipeline = pipeline
        self.config = config
        self.manifest_path = manifest_path
        self.command = tuple(command)
        self.env = dict(env) if env is not None else None
        self.run_timeout = run_timeout
        self.base_url = base_url
        self.token = token
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            if self.deferrable:
                run = start_run(str(self.base_url), self._token(), self.pipeline, idempotency_key=_key(context))
                self.log.info("started run %s of %s on %s; deferring", run.run_id, self.pipeline, self.base_url)
                self.defer(trigger=ConduitdRunTrigger(run.base_url, run.token, run.run_id, run.pipeline,
                                                      self.poll_interval), method_name="execute_complete")
            summary = self._run(context)
        except ConduitdRunFailed as failed:
            self._fail(failed)
        return self._done(summary)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed from ConduitdRunTrigger: the run's end (or why it could not be polled)."""
        try:
            if "record" not in event:
                raise ConduitdRunFailed(int(event["exit_code"]), str(event["reason"]))
            summary = finish(event["record"])
        except ConduitdRunFailed as failed:
            self._fail(failed)
        return self._done(summary)

    def _fail(self, failed: ConduitdRunFailed) -> NoReturn:
        if failed.summary is not None:
            self.log.error("conduitd run summary: %s", failed.summary.as_dict())
        if failed.retriable:
            raise AirflowException(str(failed)) from None
        raise AirflowFailException(str(failed)) from None

    def _done(self, summary: RunSummary) -> dict[str, Any]:
        self.log.info("pipeline %s: %d rows read, %d written, %d to the DLQ", summary.pipeline, summary.rows_read,
                      summary.rows_written, summary.dlq_rows)
        return summary.as_dict()

    def _run(self, context: Any) -> RunSummary:
        if self.config is not None:
            return run_local(self.config, self.pipeline, manifest_path=self.manifest_path, command=self.command,
                             env=self.env, timeout=self.run_timeout)
        return run_remote(str(self.base_url), self._token(), self.pipeline, idempotency_key=_key(context),
                          poll_interval=self.poll_interval, timeout=self.run_timeout)

    def _token(self) -> str:
        if not self.token:
            raise ConduitdRunFailed(2, "a remote run needs token (an operator token of the daemon)")
        return self.token


def _key(context: Any) -> str:
    """The Idempotency-Key of this try of this task instance: a repeated request of the same try
    answers the same run; a retry starts a new one."""
    ti = context["ti"]
    return f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{ti.map_index}:{ti.try_number}"
