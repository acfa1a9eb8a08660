"""State changes and commits as events, for the control plane's server-sent event stream.

Publishing never blocks a pipeline: each subscriber has a bounded queue, and a subscriber that
falls behind loses its oldest events (events are numbered: it sees the gap)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any


class EventHub:
    def __init__(self, per_subscriber: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._size = per_subscriber
        self._sequence = 0

    def publish(self, kind: str, pipeline: str, **data: Any) -> None:
        self._sequence += 1
        event = {"id": self._sequence, "kind": kind, "pipeline": pipeline,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # the oldest goes; the gap in `id`s tells the subscriber
            queue.put_nowait(event)

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving every event published while the `with` block runs."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
