"""The trigger of a deferred remote run: the triggerer polls the daemon's control plane for the
run's end, so no worker slot waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from conduitd_orchestrators.remote import RemoteRun, poll_run
from conduitd_orchestrators.summary import ConduitdRunFailed


class ConduitdRunTrigger(BaseTrigger):  # type: ignore[misc]
    """Poll run `run_id` every `poll_interval` seconds; fire one event: {"record": the run's
    record} when it has ended, or {"exit_code", "reason"} when the daemon cannot be asked. The
    token is in the trigger's kwargs, which Airflow stores (encrypted) in its database."""

    def __init__(self, base_url: str, token: str, run_id: str, pipeline: str, poll_interval: float = 2.0) -> None:
        super().__init__()
        self.base_url = base_url
        self.token = token
        self.run_id = run_id
        self.pipeline = pipeline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"base_url": self.base_url, "token": self.token, "run_id": self.run_id, "pipeline": self.pipeline,
                 "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        run = RemoteRun(self.base_url, self.token, self.run_id, self.pipeline)
        while True:
            try:
                record = await asyncio.to_thread(poll_run, run)
            except ConduitdRunFailed as failed:
                yield TriggerEvent({"exit_code": failed.exit_code, "reason": failed.reason})
                return
            if record is not None:
                yield TriggerEvent({"record": record})
                return
            await asyncio.sleep(self.poll_interval)
