"""Positions of a database-table partition, and the `Plan` of what a pipeline reads.

Incremental: `{"cursor": text, "key": [text, ...], "on": [names]}`, the last row's cursor value and
primary key in PostgreSQL's own text forms (cast back on the server, so nothing is rounded); rows
are read with `(cursor, key...) > (last...) ORDER BY cursor, key... LIMIT n`, so rows sharing one
cursor value are never split badly. Whole-table reads: `{"pass": n, "key": [...] | null, "done":
bool, "on": [names]}`, the table walked in key order once per pass. `on` names the columns the
values are of (`Plan.reads_by`): a position written under another reading is refused
(`resume_problem`). Each database writes its own keyset SQL from the plan (`postgres_sql`).

The lag window (`incremental.lag_seconds`): after a poll has caught up, the rows at or below the
high water `upto` (the committed position) whose cursor is at most `lag` seconds below its cursor
are read again, in the same keyset order; such a read's `after` is `{"upto": position, "lag":
seconds}` plus, past its first chunk, the `cursor` and `key` of the last row it read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conduitd.sources.tables.catalog import SourceColumn


@dataclass(frozen=True)
class Plan:
    """What a pipeline reads: the FROM clause, its columns, key and cursor."""

    source: str
    """The FROM item: a quoted `schema.table` or a parenthesized query (aliased here)."""
    columns: Sequence[SourceColumn]
    key: Sequence[SourceColumn]
    cursor: SourceColumn | None
    strategy: str | None
    """timestamp, sequential, cursor; None for whole-table reads."""
    initial: str | None = None

    @property
    def hidden_names(self) -> list[str]:
        return [f"\x00cursor{i}" for i in range(len(self.key) + (1 if self.cursor else 0))]

    @property
    def reads_by(self) -> list[str]:
        """The columns of this plan's positions, in order: the cursor and then the key, or the key
        alone for whole-table reads. Positions record them (`on`), so one written under another
        reading is refused, not misread."""
        return [c.name for c in [*([self.cursor] if self.cursor is not None else []), *self.key]]

    def position_after(self, hidden_values: Sequence[str], previous: dict[str, Any] | None) -> dict[str, Any]:
        """The position after a row whose cursor and key texts are `hidden_values`."""
        if self.cursor is not None:
            return {"cursor": hidden_values[0], "key": list(hidden_values[1:]), "on": self.reads_by}
        return {"pass": (previous or {}).get("pass", 1), "key": list(hidden_values), "done": False,
                "on": self.reads_by}

    def resume_problem(self, position: object) -> str | None:
        """Why a committed position cannot be resumed by this plan (it was written under another
        `incremental` setting or another key: its values would be read as other columns' and rows
        skipped or the read refused), or None. Positions written before `on` was recorded are
        checked for their kind only."""
        if not isinstance(position, dict) or not ({"cursor", "pass"} & position.keys()):
            return None
        by_cursor = "cursor" in position
        if by_cursor == (self.cursor is not None) and position.get("on", self.reads_by) == self.reads_by:
            return None
        return f"its committed position was read {_reading(by_cursor, position.get('on'))}, but the config " \
               f"now reads {_reading(self.cursor is not None, self.reads_by)}"


def resumes(after: dict[str, Any] | None) -> tuple[Any, ...]:
    """What of a position a read starts from (not the lease stamp or the names it carries): a read
    started ahead from one position serves a later read from an equal one."""
    after = after or {}
    return after.get("cursor"), tuple(after.get("key") or ()), after.get("pass")


def position_finding(plan: Plan, partition: str, position: object) -> tuple[str, str, str] | None:
    """`validate`'s line for a committed position this plan cannot resume (`resume_problem`)."""
    problem = plan.resume_problem(position)
    if problem is None:
        return None
    return "source: position", "invalid", f"{partition}: {problem} (`conduitd checkpoints reset` starts it over)"


def _reading(by_cursor: bool, columns: Sequence[str] | None) -> str:
    if not columns:
        return "by a cursor" if by_cursor else "whole, in key order"
    if by_cursor:
        return f"by the cursor {columns[0]!r} then the key ({', '.join(columns[1:])})"
    return f"whole, in the order of the key ({', '.join(columns)})"


def next_pass(position: dict[str, Any] | None) -> dict[str, Any]:
    """Where a whole-table read starts: a new pass after a finished one, else where it stands."""
    if position is None:
        return {"pass": 1, "key": None, "done": False}
    if position.get("done"):
        return {"pass": int(position.get("pass", 0)) + 1, "key": None, "done": False}
    return position


def window_of(after: dict[str, Any] | None) -> tuple[dict[str, Any], float] | None:
    """(high water, seconds) of a read of the lag window, None for a read after a position."""
    if after is None or "upto" not in after:
        return None
    return after["upto"], float(after["lag"])
