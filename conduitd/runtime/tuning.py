"""Batch sizing: how many rows the next batch may hold, and what the measured stage timings
suggest. Fed by the pipeline after every commit (`observe`), read by the batch cutter (`limit`).

A fixed size (`batch.max_rows: <n>`) never changes. Under `max_rows: auto` the size follows
`next_limit` after every commit: a commit slower than `target_latency` shrinks the size toward the
one that would have met it (at most halving it per commit); a faster one grows it the same way (at
most to four times the rows that batch held, so a half-empty batch, cut by `max_wait` or the
source's end, is no evidence for more). A latency within `BAND` of the target leaves it alone;
while sizes hold steady the law sees the median latency of the last `STEADY` commits.
The size stays within `min_rows`..`max_rows_limit` and below what `max_bytes` holds at the
measured bytes per row. Sources read chunks of at most the current size (`Resizable`), so a
small size really gives small batches, and a larger one does not pay the overhead of small chunks.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from conduitd.config import BatchConfig
from conduitd.core.timings import Timings
from conduitd.runtime.suggestions import Observation, suggest, summary

log = logging.getLogger(__name__)

GROW = 4.0
"""The most a size grows by per commit, relative to the rows of the batch that argues for it."""
SHRINK = 0.5
"""The most a size shrinks by per commit."""
AIM = 0.9
"""Sizes are steered to this share of the target: the rest is headroom for noise."""
BAND = (0.7, 1.1)
"""A commit latency within these multiples of the target leaves the size as it is."""
STEADY = 3
"""Commits of about one size whose median latency the law follows (see `_steady_seconds`)."""
ROW_BYTES_WEIGHT = 0.2
"""Weight of the newest batch in the running mean of bytes per row."""


@runtime_checkable
class Resizable(Protocol):
    """A source that reads its `max_rows` each time it cuts a chunk (the built-in ones do)."""

    max_rows: int


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a size must respect: `low`..`high` rows, `max_bytes` of source bytes, and the
    latency it is steered toward."""

    low: int
    high: int
    max_bytes: int
    target: float

    @classmethod
    def of(cls, batch: BatchConfig) -> Bounds:
        high = batch.max_rows_limit if batch.adaptive else batch.max_rows
        return cls(min(batch.min_rows, high), high, batch.max_bytes, batch.target_latency)

    def cap(self, row_bytes: float) -> int:
        """The largest size allowed: `high`, and no more rows than `max_bytes` holds."""
        cap = self.high if row_bytes <= 0 else min(self.high, int(self.max_bytes / row_bytes))
        return max(self.low, cap)

    def clamp(self, rows: float, row_bytes: float) -> int:
        return max(self.low, min(self.cap(row_bytes), round(rows)))


def next_limit(limit: int, records: int, seconds: float, bounds: Bounds, row_bytes: float = 0.0) -> int:
    """The control law (pure): the size after a batch of `records` rows took `seconds` to write
    and commit while the size was `limit`."""
    size: float = limit
    if records > 0 and seconds > 0:
        ratio = bounds.target / seconds
        if seconds > bounds.target * BAND[1]:
            size = min(limit, max(records * ratio * AIM, limit * SHRINK))
        elif seconds < bounds.target * BAND[0]:
            size = max(limit, min(records * ratio * AIM, records * GROW))
    return bounds.clamp(size, row_bytes)


class BatchSizer:
    """The size of the next batch: `batch.max_rows`, or under `max_rows: auto` one that follows
    `next_limit` after every `observe`. `source` (a `Resizable`) is kept reading chunks of at most
    that size. `report` is the state and the suggestions drawn from the last `window` batches."""

    def __init__(self, batch: BatchConfig, window: int = 50, *, source: object | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.batch = batch
        self.bounds = Bounds.of(batch)
        self.recent: deque[Observation] = deque(maxlen=window)
        self.clock = clock
        self.batches = 0
        self.row_bytes = 0.0
        """Running mean of source bytes per row."""
        self.source = source if isinstance(source, Resizable) else None
        self._limit = batch.first_rows
        self._resize_source()

    @property
    def limit(self) -> int:
        return self._limit

    def observe(self, records: int, nbytes: int, seconds: float, timings: Timings) -> None:
        """A batch of `records` rows (`nbytes` source bytes) took `seconds` to write and commit."""
        stages = {name: (end - start) / 1e9 for name, (start, end) in timings.spans.items()}
        self.recent.append(Observation(records, nbytes, seconds, stages, self._limit, self.clock()))
        self.batches += 1
        if records > 0 and nbytes > 0:
            per_row = nbytes / records
            self.row_bytes = per_row if not self.row_bytes else \
                (1 - ROW_BYTES_WEIGHT) * self.row_bytes + ROW_BYTES_WEIGHT * per_row
        if not self.batch.adaptive:
            return
        size = next_limit(self._limit, records, self._steady_seconds(), self.bounds, self.row_bytes)
        if size != self._limit:
            log.debug("batch size %d -> %d (a batch of %d rows committed in %.3fs; target %.3fs)",
                      self._limit, size, records, seconds, self.bounds.target)
            self._limit = size
            self._resize_source()

    def _steady_seconds(self) -> float:
        """The latest commit's latency, or while sizes hold steady the median of the last
        `STEADY` commits of about its size: one slow commit (a checkpoint on the server, a busy
        machine) does not shrink the size, two do."""
        last = self.recent[-1]
        alike = [o.seconds for o in list(self.recent)[-STEADY:]
                 if 0.8 * last.records <= o.records <= 1.25 * last.records]
        return statistics.median(alike)

    def _resize_source(self) -> None:
        if self.source is None or not self.batch.adaptive:
            return
        try:
            self.source.max_rows = self._limit
        except AttributeError:  # a plugin's read-only `max_rows`: its chunks keep their size
            log.debug("source %s keeps its chunk size", type(self.source).__name__)
            self.source = None

    def report(self) -> dict[str, Any]:
        """JSON-ready: the size now, its bounds, what the recent batches measured and what they suggest."""
        recent = list(self.recent)
        return {
            "adaptive": self.batch.adaptive,
            "max_rows": self._limit,
            "target_latency": self.bounds.target,
            "bounds": {"min_rows": self.bounds.low, "max_rows": self.bounds.high,
                       "max_bytes": self.bounds.max_bytes,
                       "max_rows_by_bytes": int(self.bounds.max_bytes / self.row_bytes) if self.row_bytes else None},
            "batches": self.batches,
            "measured": summary(recent),
            "suggestions": suggest(recent, self.batch, self._limit, self.row_bytes),
        }
