"""`service.api`: the control plane's HTTP API and web UI (`conduitd.api`). Off unless set."""

from __future__ import annotations

from pydantic import Field

from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.core.units import PositiveDuration

TOKENS_ENV = "CONDUITD_API_TOKENS"
"""The environment variable that may hold token entries (the tokens file's YAML or JSON)."""


class ApiConfig(StrictModel):
    """`service.api`: where the API and UI listen and who may use them."""

    host: NonEmpty = "127.0.0.1"
    """Address to bind; only this machine by default (put a TLS proxy in front for others)."""
    port: int = Field(8780, ge=0, le=65535)
    """Port to bind; 0 picks a free one (logged at start)."""
    tokens_file: NonEmpty | None = None
    """YAML file of token entries (`name`, `sha256` of the token, `role`, `projects`); made by
    `conduitd token create`. Entries may also come from $CONDUITD_API_TOKENS (same shape)."""
    idempotency_ttl: PositiveDuration = 24 * 3600.0
    """How long a mutation's `Idempotency-Key` is remembered (its repeat gets the first answer)."""
    pause_timeout: PositiveDuration = 60.0
    """How long a pause request waits for what is queued to commit before answering `pausing`."""
