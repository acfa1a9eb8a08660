"""Human-friendly quantities in config: byte sizes ("64MiB") and durations ("1s", "250ms").

Every quantity is finite and positive where zero makes no sense: a zero read size reads nothing,
a negative or zero poll interval is a busy loop, a NaN compares false with everything. The
bounds are checked here, once, so every setting of a kind gets them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
    "k": 1024, "m": 1024**2, "g": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
MAX_BYTES = 1024**4
"""1TiB: far above any useful chunk or batch, and below what C sizes overflow on."""
MAX_SECONDS = 366 * 86400.0
"""A year: event loops (uvloop counts milliseconds in 64 bits) overflow on larger timers."""


def parse_bytes(value: object) -> int:
    """Accept a positive int or a string such as "64MiB", "1.5GB", "4096"; return bytes (1..1TiB)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _QUANTITY.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _BYTE_UNITS:
            raise ValueError("expected a size such as 64MiB or 1GB")
        size = int(float(match.group(1)) * _BYTE_UNITS[unit])
    if not 1 <= size <= MAX_BYTES:
        raise ValueError("a size must be at least 1 byte and at most 1TiB")
    return size


def parse_duration(value: object) -> float:
    """Accept a number of seconds or a string such as "1s", "250ms", "5m"; return seconds (finite, >= 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 1s")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _QUANTITY.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _DURATION_UNITS:
            raise ValueError("expected a duration such as 1s, 250ms or 5m")
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise ValueError("a duration must be a finite number of seconds, at least 0 and at most a year")
    return seconds


MIN_INTERVAL = 0.01
"""The shortest interval or timeout: a loop waiting less than 10 ms between attempts would spin
(a retry every microsecond logged thousands of lines a second and starved the signal handler)."""


def parse_positive_duration(value: object) -> float:
    """A duration that must be above zero (an interval or a timeout: zero would spin or never wait)."""
    seconds = parse_duration(value)
    if seconds < MIN_INTERVAL:
        raise ValueError("a duration must be at least 10ms here (a shorter interval would spin)")
    return seconds


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration where 0 means "not at all" (e.g. a drain deadline of 0: stop at once)."""
PositiveDuration = Annotated[float, BeforeValidator(parse_positive_duration)]
"""An interval or a timeout: above zero."""
