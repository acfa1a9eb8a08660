"""Incremental reads by a field, pure: which records of a pass are new, and the position after each.

The position of an incremental source is `{"value": v, "ties": n}`: the largest value of the field
handed over, and how many records with exactly that value were. A pass asks for records at or after
`v` (the endpoint's filter, inclusive) in ascending order of the field; a `Sieve` skips those
before `v` and the first `n` at `v`, so a pass that starts again after a crash hands over each
record once, even when many records share a value across a page edge. Numbers compare as numbers,
text as text (ISO-8601 times in one format and zone compare correctly as text).
"""

from __future__ import annotations

from typing import Any

from conduitd.core.records import Position
from conduitd.sources.rest.pages import MISSING, value_at


def comparable(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or isinstance(value, str)


def _same_kind(a: Any, b: Any) -> bool:
    return isinstance(a, str) == isinstance(b, str)


class Sieve:
    """Decides, record by record in the order read, what a pass hands over; `position` is the
    position after the records let through so far."""

    def __init__(self, field: str, committed: Position, start: Any = None) -> None:
        self.field = field
        value = committed.get("value") if isinstance(committed, dict) else None
        ties = int(committed.get("ties", 0)) if isinstance(committed, dict) else 0
        if value is None and start is not None:
            value, ties = start, 0
        self.floor: Any = value
        self._skip_ties = ties
        self.value: Any = value
        self.ties = ties
        self.committed = committed

    @property
    def filter_value(self) -> Any:
        """The value the endpoint's filter parameter asks from (None: everything)."""
        return self.floor

    @property
    def position(self) -> Position:
        if self.value is None:
            return self.committed
        return {"value": self.value, "ties": self.ties}

    def admit(self, record: Any) -> str | None:
        """None: hand `record` over (the position moves past it); "": skip it (already handed
        over); otherwise why it is rejected (the position does not move)."""
        value = value_at(record, self.field) if isinstance(record, dict) else MISSING
        if not isinstance(record, dict):
            return None  # rejected by the decoder as not an object; not skipped, not marked
        if value is MISSING or value is None:
            return f"the incremental field {self.field!r} is missing or null"
        if not comparable(value):
            return f"the incremental field {self.field!r} is {type(value).__name__}, not a number or text"
        if self.floor is not None:
            if not _same_kind(value, self.floor):
                return f"the incremental field {self.field!r} is {type(value).__name__}, " \
                       f"unlike the committed value ({type(self.floor).__name__})"
            if value < self.floor:
                return ""
            if value == self.floor and self._skip_ties > 0:
                self._skip_ties -= 1
                return ""
        if self.value is None or (_same_kind(value, self.value) and value > self.value):
            self.value, self.ties = value, 1
        elif value == self.value:
            self.ties += 1
        # a value below the largest so far (out of order): handed over, the position stays
        return None
