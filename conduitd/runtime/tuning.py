"""Batch sizing: how many rows the next batch may hold, and what the measured stage timings
suggest. Fed by the pipeline after every commit (`observe`), read by the batch cutter (`limit`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from conduitd.config import BatchConfig
from conduitd.core.timings import Timings


@dataclass(frozen=True, slots=True)
class Observation:
    records: int
    nbytes: int
    seconds: float
    """Time to write and commit the batch."""
    stages: dict[str, float]
    """Seconds per stage (poll, decode, quality, schema, write, commit)."""


class BatchSizer:
    """A fixed size: `batch.max_rows`."""

    def __init__(self, batch: BatchConfig, window: int = 50) -> None:
        self.batch = batch
        self.recent: deque[Observation] = deque(maxlen=window)

    @property
    def limit(self) -> int:
        return self.batch.max_rows

    def observe(self, records: int, nbytes: int, seconds: float, timings: Timings) -> None:
        stages = {name: (end - start) / 1e9 for name, (start, end) in timings.spans.items()}
        self.recent.append(Observation(records, nbytes, seconds, stages))

    def report(self) -> dict[str, Any]:
        return {"max_rows": self.limit, "adaptive": False}
