"""A pipeline the daemon runs, across restarts (the supervisor's bookkeeping of it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from conduitd.config import PipelineConfig
from conduitd.runtime.pipeline import Pipeline


@dataclass
class Slot:
    """A pipeline this daemon runs, across restarts."""

    resource: PipelineConfig
    pipeline: Pipeline
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None
    moved: bool = False
    """Its checkpoints were changed while it was paused (a reset, a bounded run): resuming starts
    it again from them."""
