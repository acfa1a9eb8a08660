"""The lag window of a polling source's partition (`incremental.lag_seconds`, timestamp strategy,
`mode: upsert`): after each poll has caught up, the rows at or below the high water (the committed
position) whose cursor is at most `lag` seconds below it are read again, so a row committed late
with an application-assigned timestamp older than the high water still arrives.

The position stays exactly what it was: the high water, committed with the rows as always; the
window is derived from it, and its chunks start and end there. What this process has handed over
already (the cursor and key of each row, the position of each row the source could not decode) is
not handed over again, so an idle daemon re-reads the window without writing anything and a
rejected row is not sent to the DLQ again at every poll. That memory is this process's alone and
is forgotten when what was read is dropped (a resync, a moved lease, a new run): the first window
of a run then hands its rows over once more. The upsert absorbs the rows; the window's chunks and
rejects are marked `reread`, so a DLQ table that holds an identical entry already (a row the
rules, casts or decoding rejected in an earlier run) does not take it again
(`conduitd.destinations.dlq_rereads`). A DLQ file or topic outside the destination is written at
least once: it takes such a reject again at each run while the row stays within the window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.records import Reject, position_text
from conduitd.sources.tables.cursor import Plan

MAX_REMEMBERED = 1_000_000
"""Rows remembered at most; past it the memory starts again (the next window writes its rows once more)."""


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class LagWindow:
    """See the module docstring; one per partition and read."""

    def __init__(self, seconds: float, cursor: str, key: Sequence[str]) -> None:
        self.seconds = seconds
        self.cursor = cursor
        self.key = tuple(key)
        self.sweep: dict[str, Any] | None = None
        """None between windows; while one is read, {} or the cursor and key of its last row read."""
        self._rows: dict[tuple[Any, ...], Any] = {}
        """(cursor, *key) of each row handed over -> its cursor."""
        self._rejects: set[str] = set()
        self._highest: Any = None

    def clear(self) -> None:
        """What was read is dropped: hand everything over again."""
        self.sweep = None
        self._rows.clear()
        self._rejects.clear()
        self._highest = None

    def start(self) -> None:
        """A window read begins; rows that fell out of the window are forgotten."""
        self.sweep = {}
        if isinstance(self._highest, datetime | date):
            floor = self._highest - timedelta(seconds=self.seconds)
            try:
                self._rows = {k: c for k, c in self._rows.items() if c >= floor}
            except TypeError:  # values of mixed kinds (naive and aware): start the memory again
                self._rows.clear()

    def after(self, upto: dict[str, Any]) -> dict[str, Any]:
        """The `after` of the window's next read below the high water `upto` (`cursor.window_of`)."""
        assert self.sweep is not None
        return {**window_start(upto, self.seconds), **self.sweep}

    def advance(self, last: Sequence[str] | None, caught_up: bool) -> None:
        """After a window read whose last row's texts are `last`: the window is done when it caught up."""
        self.sweep = None if last is None or caught_up else {"cursor": last[0], "key": list(last[1:])}

    def note(self, rows: pa.Table, rejects: Sequence[Reject] = ()) -> None:
        """Rows (and rejects) handed over by a read after the high water."""
        self.fresh(rows, rejects)

    def fresh(self, rows: pa.Table, rejects: Sequence[Reject]) -> tuple[pa.Table, list[Reject]]:
        """The rows and rejects not handed over yet, remembered from now on."""
        if len(self._rows) > MAX_REMEMBERED:
            self._rows.clear()
        if len(self._rejects) > MAX_REMEMBERED:
            self._rejects.clear()
        cursors = rows.column(self.cursor).to_pylist() if rows.num_rows else []
        keys = [rows.column(k).to_pylist() for k in self.key] if rows.num_rows else []
        keep: list[bool] = []
        for i, cursor in enumerate(cursors):
            identity = (_hashable(cursor), *(_hashable(k[i]) for k in keys))
            keep.append(identity not in self._rows)
            self._rows[identity] = cursor
            if cursor is not None and (self._highest is None or _later(cursor, self._highest)):
                self._highest = cursor
        new_rejects = []
        for reject in rejects:
            text = position_text(reject.position)
            if text not in self._rejects:
                self._rejects.add(text)
                new_rejects.append(reject)
        kept = rows if all(keep) else rows.filter(pa.array(keep, type=pa.bool_()))
        return kept, new_rejects


def window_start(upto: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The `after` of a window's first read below the high water `upto` (`cursor.window_of`)."""
    return {"upto": {"cursor": upto["cursor"], "key": list(upto.get("key") or [])}, "lag": seconds}


CHECK = "source: lag window"
"""The name of `validate`'s line about the window."""


async def window_findings(pipeline: PipelineConfig, plan: Plan, position: Any,
                          count: Callable[[dict[str, Any]], Awaitable[int]], cap: int) -> list[tuple[str, str, str]]:
    """What `validate` says about the pipeline's lag window (nothing without one): invalid where
    the run refuses it, else how much it re-reads (`count` of the rows of a window read `after`,
    at most `cap`), and a warning where rejects there reach a DLQ outside the destination."""
    seconds = pipeline.incremental.lag_seconds if pipeline.incremental is not None else 0.0
    if not seconds:
        return []
    if plan.cursor is None or plan.strategy != "timestamp":
        read_as = plan.strategy or "a whole-table read"
        return [(CHECK, "invalid", f"incremental.lag_seconds needs the timestamp strategy (a timestamp cursor "
                                   f"column); this pipeline's cursor is read as {read_as}: the run stops with a "
                                   "config error")]
    if isinstance(position, dict) and "cursor" in position:
        rows = await count(window_start(position, seconds))
        there = f"at least {cap:,}" if rows >= cap else f"{rows:,}"
        now = f"{there} row(s) there now"
    else:
        now = "nothing committed yet"
    detail = (f"re-reads the last {seconds:g} s below the committed position after each catch-up ({now}); "
              f"upsert absorbs the re-reads")
    if pipeline.dlq.type != "table":
        return [(CHECK, "warning", f"{detail}; the DLQ is a {pipeline.dlq.type} outside the destination, written "
                                   "at least once: a rejected row within the window is added to it again at each "
                                   "run or restart (a DLQ table keeps one entry)")]
    return [(CHECK, "ok", f"{detail}, a rejected row there gets one DLQ entry")]


def _later(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        return False
