"""What the routes reach the daemon through: the runtime, the config, the tokens, and short-lived
connections to a pipeline's destination for reads and audited changes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from conduitd.api.problems import Problem
from conduitd.api.tokens import Principal, Tokens
from conduitd.apisettings import ApiConfig
from conduitd.config import Config, PipelineConfig
from conduitd.destinations import Destination, make_destination
from conduitd.destinations.control import AuditEntry, ControlReads, ControlTransaction
from conduitd.errors import ConduitError

if TYPE_CHECKING:
    from conduitd.api.daemon import Daemon

T = TypeVar("T")


@dataclass
class Remembered:
    """A mutation's answer, kept for repeats with the same Idempotency-Key."""

    fingerprint: str
    status: int
    body: Any
    at: float = field(default_factory=time.monotonic)


class Access:
    """See the module docstring; one per API server."""

    def __init__(self, runtime: Daemon, settings: ApiConfig, tokens: Tokens) -> None:
        self.runtime = runtime
        self.config: Config = runtime.config
        self.settings = settings
        self.tokens = tokens
        self._answers: dict[tuple[str, str], Remembered] = {}
        self._pending: dict[str, tuple[float, int]] = {}

    # -- pipelines a caller may see ------------------------------------------------------------

    def visible(self, who: Principal) -> list[PipelineConfig]:
        return [r for r in self.config.resources if who.sees(r.project)]

    def resource(self, who: Principal, name: str) -> PipelineConfig:
        """The pipeline, or 404 (also when it exists in a project the caller cannot see: its
        existence is not told)."""
        for resource in self.config.resources:
            if resource.name == name and who.sees(resource.project):
                return resource
        raise Problem(404, f"no pipeline {name!r}")

    # -- destinations --------------------------------------------------------------------------

    @asynccontextmanager
    async def destination(self, resource: PipelineConfig, *, read_only: bool = True) -> AsyncIterator[Destination]:
        """A connection of its own to the pipeline's destination, closed after use; an
        unreachable destination is a 503 problem."""
        destination = make_destination(self.config.destination(resource.destination))
        try:
            await destination.open(read_only=read_only)
        except ConduitError as exc:
            raise Problem(503, f"destination {resource.destination!r} cannot be reached: {exc}") from None
        try:
            yield destination
        except ConduitError as exc:
            raise Problem(503 if exc.retriable else 409, f"destination {resource.destination!r}: {exc}") from None
        finally:
            await destination.close()

    def controls(self, resource: PipelineConfig) -> bool:
        """Whether the pipeline's destination keeps usage and the audit log."""
        config = self.config.destination(resource.destination)
        return bool(make_destination(config).capabilities.control)

    async def audited(self, who: Principal, resource: PipelineConfig, action: str, before: Any, after: Any,
                      key: str | None, change: Callable[[Destination, ControlTransaction], Awaitable[T]] | None = None
                      ) -> T | None:
        """Run `change` (if any) and write its audit row in ONE destination transaction: the
        change is recorded exactly when it is made. A destination that cannot keep the audit
        log refuses every mutation of its pipelines (409)."""
        if not self.controls(resource):
            raise Problem(409, f"destination {resource.destination!r} keeps no audit log (a SQL destination does): "
                               f"pipeline {resource.name!r} is operated from the CLI")
        async with self.destination(resource, read_only=False) as destination:
            async with destination.transaction() as tx:
                assert isinstance(tx, ControlTransaction)
                result = await change(destination, tx) if change is not None else None
                after_state = after(result) if callable(after) else after
                await tx.record_audit(AuditEntry(who.name, who.role, resource.project, resource.name, action,
                                                 before, after_state, key))
            return result

    async def pending_count(self, resource: PipelineConfig) -> int | None:
        """Schema changes of `manual` mode awaiting a decision (read at most every 5 s per
        pipeline); None where the destination keeps no schema history or cannot be read now."""
        cached = self._pending.get(resource.name)
        if cached is not None and time.monotonic() - cached[0] < 5.0:
            return cached[1]
        if not self.controls(resource):
            return None
        try:
            async with self.destination(resource) as destination:
                assert isinstance(destination, ControlReads)
                count = len(await destination.pending_changes(resource.name))
        except Problem:
            return None
        self._pending[resource.name] = (time.monotonic(), count)
        return count

    def forget_pending(self, name: str) -> None:
        """A schema change of the pipeline was decided: count again next time."""
        self._pending.pop(name, None)

    # -- idempotency ---------------------------------------------------------------------------

    def remembered(self, who: Principal, key: str | None, fingerprint: str) -> Remembered | None:
        if key is None:
            return None
        self._expire()
        known = self._answers.get((who.name, key))
        if known is not None and known.fingerprint != fingerprint:
            raise Problem(422, "this Idempotency-Key was used for a different request")
        return known

    async def recorded(self, who: Principal, resource: PipelineConfig, key: str) -> AuditEntry | None:
        """The audit row of a mutation this caller made on the pipeline under `key` (before a
        restart of the daemon, which forgets the answers it kept); None when there is none or
        the destination cannot tell now."""
        if not self.controls(resource):
            return None
        try:
            async with self.destination(resource) as destination:
                assert isinstance(destination, ControlReads)
                return await destination.find_audit(who.name, resource.name, key)
        except Problem:
            return None

    def remember(self, who: Principal, key: str | None, fingerprint: str, status: int, body: Any) -> None:
        if key is not None:
            self._answers[(who.name, key)] = Remembered(fingerprint, status, body)

    def _expire(self) -> None:
        oldest = time.monotonic() - self.settings.idempotency_ttl
        for key in [k for k, v in self._answers.items() if v.at < oldest]:
            del self._answers[key]
