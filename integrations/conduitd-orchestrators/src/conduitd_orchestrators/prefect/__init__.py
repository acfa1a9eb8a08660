"""Prefect: the `conduitd_run` task and the `conduitd_pipelines` flow helper."""

from conduitd_orchestrators.prefect.tasks import conduitd_pipelines, conduitd_run, retry_on_exit_5

__all__ = ["conduitd_pipelines", "conduitd_run", "retry_on_exit_5"]
