"""`alerts:` (top level): where alerts go (webhook and Slack sinks) and what raises them.

The engine (`conduitd.ops.alerts`) turns the runtime's events and statuses into incidents; each
incident sends one alert when it opens and one when it is resolved."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator

from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.core.redact import remember
from conduitd.core.units import Duration, PositiveDuration
from conduitd.credentials import SecretText

_NAME = r"^[A-Za-z0-9_.\-]+$"


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return url


def _secret_url(url: SecretStr) -> SecretStr:
    """An http(s) URL, masked in every log line from now on."""
    remember([url.get_secret_value()])
    _http_url(url.get_secret_value())
    return url


class WebhookSink(StrictModel):
    """A generic HTTP endpoint: each alert is POSTed as a versioned JSON envelope."""

    type: Literal["webhook"]
    name: NonEmpty = Field("webhook", pattern=_NAME)
    """How logs and the `conduitd_alert_deliveries` metric name this sink."""
    url: SecretText
    """Where alerts are POSTed; kept secret (such URLs often carry a token)."""
    secret: SecretText | None = None
    """With it, each request carries `X-Conduitd-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`
    and `X-Conduitd-Timestamp`; text or `{from: env|file|<provider>, ...}`."""
    timeout: PositiveDuration = 10.0
    """Longest wait for one delivery attempt."""

    _url = field_validator("url")(_secret_url)


class SlackSink(StrictModel):
    """A Slack incoming webhook: each alert is a message of Block Kit blocks."""

    type: Literal["slack"]
    name: NonEmpty = Field("slack", pattern=_NAME)
    url: SecretText
    """The incoming-webhook URL (https://hooks.slack.com/services/...); kept secret."""
    timeout: PositiveDuration = 10.0

    _url = field_validator("url")(_secret_url)


def _sink_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


AlertSink = Annotated[Annotated[WebhookSink, Tag("webhook")] | Annotated[SlackSink, Tag("slack")],
                      Discriminator(_sink_type)]
"""A sink, told apart by its `type`."""


class AlertsConfig(StrictModel):
    """`alerts:`: sinks, the conditions that open incidents, and how deliveries are paced."""

    sinks: tuple[AlertSink, ...]
    """Where every alert goes: at least one."""
    pipelines: tuple[NonEmpty, ...] = ()
    """Alert only on these pipelines (default: all)."""
    failed_after: Duration = 30.0
    """A pipeline retrying a failure this long is alerted as failed (a `failed` pipeline at once);
    it recovers when it runs again."""
    stalled_after: PositiveDuration | None = 600.0
    """Alert when nothing has committed for this long while data waits (lag above 0); `null`: off."""
    lag_above: float | None = Field(None, gt=0)
    """Alert while the lag (summed over partitions, in `lag_unit`) is above this; `null`: off."""
    lag_unit: Literal["records", "seconds", "bytes"] = "records"
    dlq_rows_above: int | None = Field(None, ge=0)
    """Alert when more rows than this went to the DLQ within `dlq_window`; `null`: off."""
    dlq_window: PositiveDuration = 300.0
    checkpoint_conflicts: bool = True
    """Alert when a batch is refused by the checkpoint compare-and-set (resolved by the next commit)."""
    schema_drift: bool = True
    """Alert while schema changes wait for a human (`manual` evolution, not applied)."""
    dbt: bool = True
    """Alert when a dbt run after commits (`after_commit.dbt`) does not succeed; its next success
    resolves it (a skipped or cancelled run changes nothing)."""
    check_interval: PositiveDuration = 5.0
    """How often statuses (lag, stalls, schema drift, retrying) are looked at."""
    max_per_minute: int = Field(30, gt=0)
    """Per sink: more alerts than this in a minute wait their turn (the rate limit)."""
    retries: int = Field(5, ge=0)
    """Further attempts after a failed delivery (connection error, timeout, 429 or 5xx)."""
    retry_wait: PositiveDuration = 1.0
    """Pause before the first retry; it doubles up to `retry_max_wait`. A receiver's `Retry-After`
    (429 or 5xx) lengthens a pause to what it asks, up to `retry_max_wait`."""
    retry_max_wait: PositiveDuration = 60.0
    queue_size: int = Field(1000, gt=0)
    """Per sink: alerts waiting for delivery beyond this drop the oldest (counted as `dropped`)."""
    ui_url: NonEmpty | None = None
    """Base URL of the web UI for the link in each alert (e.g. behind a proxy); default: the
    address `service.api` listens on. No link without either."""

    @field_validator("sinks")
    @classmethod
    def _some_sink(cls, sinks: tuple[AlertSink, ...]) -> tuple[AlertSink, ...]:
        if not sinks:
            raise ValueError("name at least one sink (type webhook or slack)")
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError("two sinks have the same name: give each its own `name`")
        return sinks

    @field_validator("ui_url")
    @classmethod
    def _ui_url(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url).rstrip("/")
