"""When each stage of one batch ran, measured as it happens (pure; `ops.telemetry` turns the
stages into spans)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

STAGES = ("poll", "decode", "quality", "schema", "write", "commit")


@dataclass
class Timings:
    """Start and end (ns since the epoch) of each stage of one batch; a stage seen several times
    (one poll per chunk) spans from its first start to its last end."""

    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    _open: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, start_ns: int, end_ns: int) -> None:
        first, last = self.spans.get(stage, (start_ns, end_ns))
        self.spans[stage] = (min(first, start_ns), max(last, end_ns))

    def begin(self, stage: str) -> None:
        self._open[stage] = time.time_ns()

    def end(self, stage: str) -> None:
        started = self._open.pop(stage, None)
        if started is not None:
            self.add(stage, started, time.time_ns())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def merge(self, other: Timings) -> None:
        for stage, (start, end) in other.spans.items():
            self.add(stage, start, end)
