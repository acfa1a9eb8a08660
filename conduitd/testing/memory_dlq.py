"""An external DLQ sink in memory (a `conduitd.dlq_sinks.DlqSink`), as a file or a topic is:
outside the destination's transaction, so what it was given stays when the batch rolls back
(at least once). It can fail on cue, before or after keeping the rejects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conduitd.core.records import Reject
from conduitd.dlq_sinks import entry
from conduitd.errors import TransientError
from conduitd.testing.faults import ErrorSpec, make_error


class MemoryDlqSink:
    """`entries`: every DLQ entry written, in order, as `conduitd.dlq_sinks.entry` makes them
    (each with its `id`, equal for a repeat of the same reject)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.writes = 0
        self.closed = False
        self._fail: tuple[ErrorSpec, bool] | None = None

    def fail_next(self, error: ErrorSpec = TransientError, *, after_write: bool = False) -> None:
        """Make the next `write` raise `error`: before keeping anything, or after (`after_write`:
        the rejects are durable, the error is lost on the way back)."""
        self._fail = (error, after_write)

    async def write(self, pipeline: str, rejects: Sequence[Reject]) -> None:
        self.writes += 1
        fail, self._fail = self._fail, None
        if fail is not None and not fail[1]:
            raise make_error(fail[0], "external DLQ sink")
        self.entries.extend(entry(pipeline, r) for r in rejects)
        if fail is not None:
            raise make_error(fail[0], "external DLQ sink")

    async def close(self) -> None:
        self.closed = True

    def ids(self) -> list[str]:
        return [str(e["id"]) for e in self.entries]
