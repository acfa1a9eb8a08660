"""How a pipeline retries a failure: a `RetryPolicy` value (backoff, longest wait, when to give up,
which errors are retriable) that the pipeline follows; another policy is another value, not
another code path."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from conduitd.config import ServiceConfig
from conduitd.errors import ConduitError


def retriable(exc: BaseException) -> bool:
    """The default judgement: what the error tree says (`ConduitError.retriable`)."""
    return isinstance(exc, ConduitError) and exc.retriable


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
        """The policy of the config: `service.retry_max_wait`; under --once, `once_retry_timeout`."""
        return cls(max_wait=service.retry_max_wait, give_up_after=service.once_retry_timeout if once else None)

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
