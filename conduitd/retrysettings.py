"""`service.retry`: how the runtime retries what a retry can cure (`runtime.retry` turns it into a
`RetryPolicy`), and the entry-point group through which packages add retry policies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.core.units import PositiveDuration

RETRY_GROUP = "conduitd.retry"
"""Entry-point group of retry policies from packages: the name is what `service.retry.policy` says."""


class RetryConfig(StrictModel):
    """`service.retry`: how retriable failures (an unreachable dependency, a transient error) are
    retried; the runtime turns it into a `RetryPolicy` value."""

    first_wait: PositiveDuration = 0.2
    """Pause after the first failure; it doubles after each further one."""
    max_wait: PositiveDuration | None = None
    """Longest pause (default: `service.retry_max_wait`, the same setting under its earlier name)."""
    jitter: float = Field(0.5, ge=0.0, le=1.0)
    """Each pause is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    give_up_after: PositiveDuration | None = None
    """In daemon mode, stop retrying after this long and fail the pipeline (default: retry while the
    daemon runs). Under --once, `service.once_retry_timeout` applies (the smaller of the two)."""
    retry_on: tuple[Literal["unreachable", "transient"], ...] = ("unreachable", "transient")
    """Which retriable errors are retried: `unreachable` (a server or port not answering),
    `transient` (a dropped connection, a serialization failure, a busy database). An error left
    out fails the pipeline at once. Errors that no retry can cure (config, quality, schema,
    checkpoint conflicts) are never retried."""
    policy: NonEmpty | None = None
    """A retry policy from an installed package (entry-point group `conduitd.retry`): its factory
    receives the policy these keys describe and `options`, and returns the policy to follow."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Settings for `policy`, passed to it as they are."""

    @field_validator("retry_on")
    @classmethod
    def _some_and_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each kind of error once")
        return value

    @field_validator("policy")
    @classmethod
    def _installed(cls, value: str | None) -> str | None:
        if value is not None:
            import importlib.metadata

            known = sorted(p.name for p in importlib.metadata.entry_points(group=RETRY_GROUP))
            if value not in known:
                raise ValueError(f"no retry policy {value[:40]!r} is installed "
                                 f"(known: {', '.join(known) or 'none'}; packages add them through the "
                                 f"entry-point group {RETRY_GROUP})")
        return value

    @model_validator(mode="after")
    def _options_need_a_policy(self) -> RetryConfig:
        if self.options and self.policy is None:
            raise ValueError("options are settings for a `policy`; name the policy or drop them")
        return self
