"""The rate limit of one sink, pure: a token bucket of `per_minute` tokens refilled evenly."""

from __future__ import annotations


class TokenBucket:
    """At most `per_minute` sends in any minute, `per_minute` at once after a quiet minute."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = float(per_minute)
        self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a send is allowed (0: now, and the token is taken)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
