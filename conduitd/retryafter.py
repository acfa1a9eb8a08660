"""The `Retry-After` header of an HTTP answer (RFC 9110 §10.2.3), read alike by every HTTP client of
conduitd: the REST source and the alert sinks."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


def retry_after(header: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date); None if none."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
