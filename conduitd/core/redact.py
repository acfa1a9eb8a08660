"""The one place secrets are masked: every output (logs, error messages, /status, the manifest,
`validate`, the CLI's error line) passes its text through `redact` or `redact_value`.

Two layers, so that a secret is masked even where nobody knew it was one:
1. Known secrets: the config registers every secret value it parses (a DSN's password, Kafka
   client properties such as `sasl.password`) with `remember`; each is masked wherever it
   appears, also in the spellings a message may quote it in (repr, JSON, %-encoded).
2. Patterns: anything shaped like a password inside a connection string is masked too: the
   `user:password@` of a URL and the `password=...` of a libpq keyword list.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any, TypeVar, cast
from urllib.parse import quote

_T = TypeVar("_T")
MASK = "***"
_MIN_LENGTH = 3
"""Shorter secrets are not masked by value: masking every "a" would garble all output, and a
one- or two-character secret is not worth stealing. Patterns still mask them inside DSNs."""

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>\S*)@")
_KEYWORD = re.compile(
    r"(?P<head>\b(?:password|sslpassword|passwd|pwd)\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s,;&)}\]'\"]+)",
    re.IGNORECASE)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def remember(values: Iterable[str | None]) -> None:
    """Register secret values (idempotent; thread-safe: logging may run in other threads)."""
    global _pattern
    spellings = {s for v in values if v and len(v) >= _MIN_LENGTH for s in _spellings(v)}
    with _lock:
        if spellings <= _secrets:
            return
        _secrets.update(spellings)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def _spellings(secret: str) -> set[str]:
    """How a message may quote the secret: as is, in a repr, in JSON, %-encoded."""
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             quote(secret, safe=""), quote(secret, safe="~!$&'()*+,;=:")}
    return {f for f in forms if len(f) >= _MIN_LENGTH}


def redact(text: str) -> str:
    """`text` with every known secret and every DSN password replaced by ***."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + "@", text)
    if "=" in text:
        text = _KEYWORD.sub(lambda m: m["head"] + MASK, text)
    return text


def redact_value(value: _T) -> _T:
    """A copy of a JSON-like value (dicts, lists, strings) with `redact` applied to every string."""
    return cast(_T, _redacted(value))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def forget_all() -> None:
    """Tests only: start from no known secrets."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None
