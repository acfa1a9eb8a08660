"""The shapes of a checkpoint reset: what the operator asks for (`Ask`), where it leads
(`Target`), and how two positions compare; shared by `api.positions` and `api.positions_kafka`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conduitd.api.problems import Problem
from conduitd.core.records import Position


@dataclass(frozen=True, slots=True)
class Ask:
    """What the operator asks for: exactly one of the fields."""

    offset: int | None = None
    timestamp: datetime | None = None
    sequence: str | None = None
    watermark: str | None = None
    position: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    position: Position
    direction: str | None
    """`re-read` (the new position is before the current one), `skip` (after it), `none` (the same
    place); None when the positions cannot be compared (no checkpoint yet, a watermark of text)."""
    count: int | None = None
    unit: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "direction": self.direction, "count": self.count, "unit": self.unit,
                "note": self.note}


def unfit(kind: str, ask: Ask, fits: tuple[str, ...]) -> None:
    given = [name for name in ("offset", "timestamp", "sequence", "watermark") if getattr(ask, name) is not None]
    if any(name not in fits for name in given):
        raise Problem(422, f"a {kind} source cannot be reset to a {given[0]}: give "
                           f"{' or '.join((*fits, 'position'))}")


def compare(current: Any, new: Any, unit: str | None) -> tuple[str | None, int | None]:
    """(direction, count) from the current place to the new one: numbers (offsets, bytes, rows,
    sequence numbers) with a count, numeric or ISO time texts (watermarks) without one."""
    if current is None or new is None:
        return None, None
    if new == current:
        return "none", 0
    if isinstance(current, int) and isinstance(new, int):
        return ("re-read" if new < current else "skip"), abs(current - new) if unit else None
    ordered = _ordered(str(current), str(new))
    if ordered is None:
        return None, None
    return ("re-read" if ordered else "skip"), None


def _ordered(current: str, new: str) -> bool | None:
    """Whether `new` comes before `current`, as numbers or times; None when they are neither."""
    try:
        return float(new) < float(current)
    except ValueError:
        pass
    try:
        when, then = datetime.fromisoformat(current), datetime.fromisoformat(new)
    except ValueError:
        return None
    when, then = (w.replace(tzinfo=UTC) if w.tzinfo is None else w for w in (when, then))
    return then < when


