"""How far a poll may read without skipping a transaction that commits later.

- timestamp: a row's cursor is its writing transaction's start (`now()`), so every row below the
  start of the oldest transaction still running with an xid is committed already: the bound is
  `least(statement_timestamp(), min(xact_start))` over the other client sessions of the database
  that hold an xid or are running a statement (a statement takes `now()` before it gets an xid),
  and rows are read strictly below it. It is read before the read's snapshot is taken: a
  transaction that commits in between is then in the snapshot, not lost between the two.
- sequential: a sequence hands out values in order, so once every transaction that was running
  (holding an xid) when the largest value `M` was seen has ended, no row at or below `M` can still
  appear. Each poll notes `(M, its running xids)`; the bound is the largest `M` whose xids have all
  ended (at once when none was running).
- cursor: no guard (the column's order says nothing about commit order).

Known gap, documented: a transaction that takes its cursor value before it holds an xid (a
`SELECT nextval()` or `now()` long before its first write) is not seen as running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

TIMESTAMP_BOUND_SQL = """
SELECT least(statement_timestamp() - make_interval(secs => $1), min(xact_start))::text,
       (array_agg(pid ORDER BY xact_start))[1],
       (array_agg(backend_xid::text ORDER BY xact_start))[1],
       extract(epoch FROM statement_timestamp() - min(xact_start))::float8
FROM pg_catalog.pg_stat_activity
WHERE (backend_xid IS NOT NULL OR state = 'active') AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND datname = current_database()"""


@dataclass
class Holder:
    """The oldest running write transaction, which holds the bound back."""

    pid: int | None = None
    xid: str | None = None
    age: float = 0.0


@dataclass
class SequenceWatermark:
    """See the module docstring (sequential)."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    """(largest value seen, largest xid running then) of polls whose xids have not all ended."""
    safe: str | None = None

    def observe(self, largest: str | None, xmin: int, running: Sequence[int]) -> str | None:
        """After a poll saw `largest` with `running` xids, and the oldest still running is `xmin`:
        the bound (None: nothing is safe to read yet)."""
        still = []
        for value, newest in self.seen:
            if newest < xmin:
                self.safe = _larger(self.safe, value)
            else:
                still.append((value, newest))
        self.seen = still
        if largest is not None:
            if running:
                self.seen.append((largest, max(running)))
            else:
                self.safe = _larger(self.safe, largest)
        return self.safe


def _larger(a: str | None, b: str) -> str:
    if a is None:
        return b
    try:
        return a if int(a) >= int(b) else b
    except ValueError:
        return max(a, b)


def parse_snapshot(text: str) -> tuple[int, list[int]]:
    """(xmin, running xids) of a `pg_current_snapshot()` text `xmin:xmax:xip,...`."""
    xmin, _, rest = text.partition(":")
    _, _, xip = rest.partition(":")
    return int(xmin), [int(x) for x in xip.split(",") if x]


async def timestamp_bound(conn: asyncpg.Connection, lookback: float = 0.0) -> tuple[str, Holder]:
    """The bound (no later than `lookback` seconds ago) and the transaction holding it back."""
    row = await conn.fetchrow(TIMESTAMP_BOUND_SQL, float(lookback))
    assert row is not None
    return str(row[0]), Holder(row[1], row[2], float(row[3] or 0.0))
