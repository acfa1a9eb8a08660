"""What a sink receives: the webhook's versioned JSON envelope (and its signature), Slack's blocks.

Webhook envelope, version 1 (a new field may be added within a version; none is removed or
changes meaning):

    {"version": 1, "id": "<unique per message>", "event": "pipeline.failed", "status": "firing",
     "pipeline": "orders", "project": "default", "severity": "critical",
     "time": "2026-01-31T12:00:00.123Z", "dedup_key": "conduitd/default/orders/pipeline.failed",
     "incident": "<dedup_key>/<opened, ms>", "summary": "...", "link": "http://.../pipelines/orders",
     "details": {...}}

Signature (with a `secret`): header `X-Conduitd-Timestamp: <Unix seconds>` and
`X-Conduitd-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; a receiver
recomputes it over the raw body and refuses old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import quote

import orjson

from conduitd.ops.alerts.rules import Alert

VERSION = 1
SIGNATURE_HEADER = "X-Conduitd-Signature"
TIMESTAMP_HEADER = "X-Conduitd-Timestamp"
_EMOJI = {"critical": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}


def link(base: str | None, pipeline: str) -> str | None:
    """The pipeline's page in the web UI, or None without a UI address."""
    return None if base is None else f"{base.rstrip('/')}/pipelines/{quote(pipeline, safe='')}"


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def envelope(alert: Alert, ui_base: str | None) -> dict[str, Any]:
    """The webhook's JSON document for `alert` (see the module docstring)."""
    return {"version": VERSION, "id": str(uuid.uuid4()), "event": alert.kind, "status": alert.status,
            "pipeline": alert.pipeline, "project": alert.project, "severity": alert.severity,
            "time": iso(alert.at), "dedup_key": alert.dedup_key, "incident": alert.incident,
            "summary": alert.summary, "link": link(ui_base, alert.pipeline), "details": dict(alert.details)}


def webhook_body(alert: Alert, ui_base: str | None) -> bytes:
    return orjson.dumps(envelope(alert, ui_base), default=str)


def sign(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The signature headers of `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"v1={digest}"}


def verify(body: bytes, secret: str, headers: dict[str, str]) -> bool:
    """Whether `headers` carry a valid signature of `body` (what a receiver does; for tests and docs)."""
    try:
        expected = sign(body, secret, int(headers[TIMESTAMP_HEADER]))[SIGNATURE_HEADER]
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))


def slack_body(alert: Alert, ui_base: str | None) -> bytes:
    """A Slack incoming-webhook message: `text` (the notification) and Block Kit `blocks`."""
    state = "resolved" if alert.status == "resolved" else alert.severity
    title = f"{_EMOJI.get(state, '')} {alert.kind} {alert.status}: {alert.pipeline}".strip()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.summary)[:3000]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Pipeline*\n{_escape(alert.pipeline)}"},
            {"type": "mrkdwn", "text": f"*Project*\n{_escape(alert.project)}"},
            {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
            {"type": "mrkdwn", "text": f"*Time*\n{iso(alert.at)}"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"dedup key `{_escape(alert.dedup_key)}`"}]},
    ]
    page = link(ui_base, alert.pipeline)
    if page is not None:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open pipeline"}, "url": page}]})
    return orjson.dumps({"text": f"{title}: {alert.summary}"[:3000], "blocks": blocks})


def _escape(text: str) -> str:
    """Slack mrkdwn control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
