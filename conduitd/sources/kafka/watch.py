"""Is a group member left without partitions because its group's rebalance does not complete?

A member that has subscribed, or whose partitions were revoked, waits for the group to hand it an
assignment (librdkafka's `on_assign`, possibly with no partitions when the group has more members
than partitions: that is an answer, and an idle member is fine). A rebalance completes within
about a session timeout on a healthy broker; when no answer comes for much longer (a broker that
keeps a dead member as the group's leader, a member that joined and never syncs), the consumer
looks idle but reads nothing. This watch turns that into a problem for /status, /readyz and
/metrics. Time only counts while the subscription matches an existing topic: a pattern matching
nothing, or a topic not created yet, is no rebalance problem.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

MIN_LIMIT = 30.0
"""Seconds: the least time without an assignment that counts as a stuck rebalance."""


def limit_for(client: Mapping[str, object]) -> float:
    """max(2 × session.timeout.ms, 30 s): a member that died is evicted after one session timeout,
    and the join after it takes a few more seconds."""
    session = client.get("session.timeout.ms", 45_000)
    try:
        seconds = float(str(session)) / 1000
    except ValueError:
        seconds = 45.0
    return max(2 * seconds, MIN_LIMIT)


class AssignmentWatch:
    """Fed by the consumer thread (`waiting`, `assigned`, `topics_exist`), read from the event loop
    (`unassigned_seconds`, `problem`). `clock` is injectable for tests."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._topics_exist: bool | None = None  # unknown until the first metadata

    def waiting(self) -> None:
        """Subscribed, or partitions revoked: an assignment is due."""
        with self._lock:
            if self._since is None:
                self._since = self._clock()

    def assigned(self) -> None:
        """The group answered (with partitions or, for a surplus member, none)."""
        with self._lock:
            self._since = None

    def topics_exist(self, exist: bool) -> None:
        """What the latest metadata says of the subscription. A topic that appears starts the count
        afresh: the group only then has something to assign."""
        with self._lock:
            if exist and self._topics_exist is False and self._since is not None:
                self._since = self._clock()
            self._topics_exist = exist

    def unassigned_seconds(self) -> float:
        """How long an assignment has been due while there was something to assign (0: none due)."""
        with self._lock:
            if self._since is None or self._topics_exist is False:
                return 0.0
            return max(0.0, self._clock() - self._since)

    def problem(self) -> str | None:
        seconds = self.unassigned_seconds()
        if seconds <= self.limit:
            return None
        return (f"no partitions assigned for {seconds:.0f} s: the group's rebalance does not complete "
                "(the broker may keep a dead member as the group's leader)")
