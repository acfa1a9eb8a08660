"""What the control plane asks of the daemon's runtime (`conduitd.runtime.supervisor.Runtime`
is it): the API depends on this Protocol, never on the supervisor, which starts the API."""

from __future__ import annotations

import asyncio
from typing import Protocol

from conduitd.config import Config, PipelineConfig
from conduitd.ops.events import EventHub
from conduitd.runtime.pipeline import Pipeline
from conduitd.runtime.runs import RunRecord
from conduitd.runtime.slots import Slot


class Daemon(Protocol):
    config: Config
    stop: asyncio.Event
    """Set once the daemon is stopping."""
    events: EventHub
    runs: dict[str, RunRecord]
    """Bounded runs by id."""

    def slot(self, name: str) -> Slot | None:
        """The pipeline as this daemon runs it; None when it does not run it (not selected)."""

    def pause(self, name: str) -> Pipeline:
        """Stop reading (raises NotNow when there is nothing to pause)."""

    def resume(self, name: str) -> Pipeline: ...

    def restart(self, name: str) -> None: ...

    def moved(self, name: str) -> None:
        """Checkpoints of a paused pipeline were changed: resuming starts it from them."""

    def idle(self, name: str) -> bool:
        """Whether nothing of this daemon reads the pipeline now (its checkpoints may change)."""

    def start_run(self, resource: PipelineConfig) -> RunRecord: ...
