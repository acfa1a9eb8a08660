"""Human-friendly quantities in config: byte sizes ("64MiB") and durations ("1s", "250ms")."""

from __future__ import annotations

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


def parse_bytes(value: object) -> int:
    """Accept an int or a string such as "64MiB", "1.5GB", "4096"; return bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int):
        return value
    match = _QUANTITY.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _BYTE_UNITS:
        raise ValueError(f"expected a size such as 64MiB or 1GB, got {value!r}")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Accept a number of seconds or a string such as "1s", "250ms", "5m"; return seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 1s")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as 1s, 250ms or 5m, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[unit]


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
