"""How a pipeline retries a failure: a `RetryPolicy` value (backoff, longest wait, when to give up,
which errors are retriable) that the pipeline follows; another policy is another value, not
another code path. `service.retry` describes it in the config; a package may supply its own
through the entry-point group `conduitd.retry`: a factory called with the configured policy and
`service.retry.options`, returning the policy to follow:

    def make(configured: RetryPolicy, options: dict[str, Any]) -> RetryPolicy:
        return dataclasses.replace(configured, is_retriable=...)
"""

from __future__ import annotations

import importlib.metadata
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from conduitd.config import ServiceConfig
from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable
from conduitd.retrysettings import RETRY_GROUP

PolicyFactory = Callable[[Any, dict[str, Any]], Any]


def retriable(exc: BaseException) -> bool:
    """The default judgement: what the error tree says (`ConduitError.retriable`)."""
    return isinstance(exc, ConduitError) and exc.retriable


def retriable_kinds(kinds: Collection[str]) -> Callable[[BaseException], bool]:
    """The default judgement narrowed to the kinds of `service.retry.retry_on`: `unreachable`
    (DependencyUnreachable) and `transient` (every other retriable error)."""
    chosen = frozenset(kinds)

    def judge(exc: BaseException) -> bool:
        if not retriable(exc):
            return False
        return ("unreachable" if isinstance(exc, DependencyUnreachable) else "transient") in chosen

    return judge


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: waits of `first_wait`, doubling up to `max_wait`, each
    scaled by a random factor in [1 - jitter, 1 + jitter]; retried for at most `give_up_after`
    seconds from the first failure (None: for ever, while the daemon runs)."""

    first_wait: float = 0.2
    max_wait: float = 30.0
    jitter: float = 0.5
    give_up_after: float | None = None
    is_retriable: Callable[[BaseException], bool] = field(default=retriable)

    @classmethod
    def for_service(cls, service: ServiceConfig, *, once: bool) -> RetryPolicy:
        """The policy `service.retry` describes (longest wait: `retry.max_wait`, else
        `retry_max_wait`; under --once, given up after `once_retry_timeout` at the latest), or
        what the package policy it names makes of it."""
        settings = service.retry
        deadline = settings.give_up_after
        if once:
            deadline = service.once_retry_timeout if deadline is None else min(deadline, service.once_retry_timeout)
        configured = cls(first_wait=settings.first_wait, max_wait=settings.max_wait or service.retry_max_wait,
                         jitter=settings.jitter, give_up_after=deadline,
                         is_retriable=retriable_kinds(settings.retry_on))
        if settings.policy is None:
            return configured
        return _from_package(settings.policy, configured, dict(settings.options))

    def wait(self, failures: int, failing_for: float) -> float | None:
        """The pause before the next try after `failures` failures in a row that began
        `failing_for` seconds ago; None when it is time to give up. The last try is made at the
        deadline, not a whole backoff after it."""
        if self.give_up_after is not None and failing_for > self.give_up_after:
            return None
        backoff = min(self.first_wait * 2 ** max(failures - 1, 0), self.max_wait)
        pause = backoff * random.uniform(1 - self.jitter, 1 + self.jitter)
        if self.give_up_after is not None:
            pause = min(pause, max(self.give_up_after - failing_for, 0.0) + 0.01)
        return float(pause)


def _from_package(name: str, configured: RetryPolicy, options: dict[str, Any]) -> RetryPolicy:
    """The policy the factory registered as `name` makes of `configured`; ConfigError (exit 2)
    naming the policy when it is missing, fails or returns something else."""
    where = f"service.retry.policy: retry policy {name!r}"
    points = {p.name: p for p in importlib.metadata.entry_points(group=RETRY_GROUP)}
    if name not in points:
        raise ConfigError(f"{where} is not installed (entry-point group {RETRY_GROUP})")
    try:
        factory: PolicyFactory = points[name].load()
        policy = factory(configured, options)
    except Exception as exc:  # noqa: BLE001 - a plugin's error, reported in one line
        raise ConfigError(f"{where} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(policy, RetryPolicy):
        raise ConfigError(f"{where} returned {type(policy).__name__}, not a RetryPolicy")
    return policy

