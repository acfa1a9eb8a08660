"""What a pipeline did lately, for the control plane: the timeline of its batches (rows, seconds
per stage, outcome, error class) and its throughput over the last 1 and 15 minutes."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from conduitd.core.timings import Timings

_BUCKET = 10.0
"""Seconds per throughput bucket."""
_WINDOW = 15 * 60.0


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch that reached the commit step, whatever its outcome."""

    at: float
    """Unix time the outcome was known."""
    records: int
    outcome: str
    """committed, dropped (read before partitions moved), conflict (another writer), retried or failed."""
    rows_written: int = 0
    dlq_rows: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0
    """Write and commit time."""
    stages: dict[str, float] = field(default_factory=dict)
    error_class: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)), "records": self.records,
                "outcome": self.outcome, "rows_written": self.rows_written, "dlq_rows": self.dlq_rows,
                "rows_deleted": self.rows_deleted, "seconds": round(self.seconds, 6),
                "stages": {k: round(v, 6) for k, v in self.stages.items()}, "error_class": self.error_class}


def stage_seconds(timings: Timings) -> dict[str, float]:
    return {name: (end - start) / 1e9 for name, (start, end) in timings.spans.items()}


class Activity:
    """Bounded: the last `keep` batches and 15 minutes of throughput buckets."""

    def __init__(self, keep: int = 500, clock: Any = time.time) -> None:
        self.timeline: deque[BatchRecord] = deque(maxlen=keep)
        self._buckets: deque[list[float]] = deque()  # [bucket start, rows written]
        self._lag: deque[tuple[float, dict[str, float]]] = deque()  # (bucket start, total per unit), last sample
        self._clock = clock

    def record(self, entry: BatchRecord) -> None:
        self.timeline.append(entry)
        if entry.rows_written:
            start = entry.at - entry.at % _BUCKET
            if self._buckets and self._buckets[-1][0] == start:
                self._buckets[-1][1] += entry.rows_written
            else:
                self._buckets.append([start, float(entry.rows_written)])
        self._expire()

    def rows_per_second(self, window: float) -> float:
        """Rows written per second over the last `window` seconds (whole buckets)."""
        self._expire()
        since = self._clock() - window
        rows = sum(count for start, count in self._buckets if start + _BUCKET > since)
        return round(rows / window, 3)

    def series(self, window: float = _WINDOW) -> list[dict[str, Any]]:
        """Rows per second per bucket over `window`, oldest first, empty buckets included."""
        self._expire()
        now = self._clock()
        last = now - now % _BUCKET
        rows = {start: count for start, count in self._buckets}
        first = last - (window // _BUCKET - 1) * _BUCKET
        out = []
        start = first
        while start <= last:
            out.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                        "rows_per_second": round(rows.get(start, 0.0) / _BUCKET, 3)})
            start += _BUCKET
        return out

    def sample_lag(self, lag: dict[str, dict[str, float]]) -> None:
        """Remember the lag summed over partitions, per unit (the last sample of each bucket)."""
        totals: dict[str, float] = {}
        for units in lag.values():
            for unit, value in units.items():
                totals[unit] = totals.get(unit, 0.0) + value
        now = self._clock()
        start = now - now % _BUCKET
        if self._lag and self._lag[-1][0] == start:
            self._lag.pop()
        self._lag.append((start, totals))
        self._expire()

    def lag_series(self) -> list[dict[str, Any]]:
        """The lag over the last 15 minutes, one sample per bucket that had one, oldest first."""
        self._expire()
        return [{"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)), "lag": totals}
                for start, totals in self._lag]

    def _expire(self) -> None:
        oldest = self._clock() - _WINDOW - _BUCKET
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()
        while self._lag and self._lag[0][0] < oldest:
            self._lag.popleft()
