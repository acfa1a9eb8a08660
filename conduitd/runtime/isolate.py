"""Writing a batch's rows when the destination may refuse some of them: the refused rows are
isolated (for the DLQ) and every other row is written, in a number of write attempts that grows
with the number of refused rows, not with the batch size.

Each attempt writes some pending rows under a savepoint. When the destination refuses one:

- First, once: the destination is asked for every row it can tell it would refuse without
  writing (PostgreSQL: NOT NULL, CHECK and unique keys, judged by one query; see
  `destinations/postgres/screen.py`); those go to the DLQ together and the rest is written in
  one attempt. Only what that misses is met by the steps below.
- If it names the refused row (PostgreSQL: the COPY line in the error's context; SQLite: the
  parameter set `executemany` stopped at), the rows before it were accepted: the attempt is rolled
  back, the named row is refused, and the next attempt is the accepted rows (known to pass) with
  fresh rows behind them; once the accepted rows outnumber the fresh ones a few times over, they
  go alone. One refused row costs about one failed attempt.
- If the write finds its refused rows itself (PostgreSQL: an upsert's merge step, where the
  failing row is no COPY line, is retried row by row inside the server in one statement; see
  `destinations/postgres/row_merge.py`), it raises RowsPartlyRefused: those rows go to the DLQ
  and the rest of the attempt, already written, is kept. One attempt, whatever the refused rows.
- If it names no row at all (that statement could not run), the attempt is
  narrowed by halves from its start, keeping each half that passes, until the first refused row
  stands alone: log2 of the attempt's size, and attempts are kept small while refusals are dense.

Attempt sizes adapt: after a refusal the next fresh attempt is about twice the distance at which
that row was found, and every attempt that passes doubles it, so a clean batch is one write and a
batch with refused rows spread through it costs O(refused) attempts of O(gap) rows each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.base import RowsPartlyRefused, RowsRefused, Transaction

_MIN_ATTEMPT = 16  # below this, per-statement overhead dominates the rows sent again
_PREFIX_SHARE = 4  # an accepted prefix rides along with fresh rows up to this many times their number


@dataclass
class Isolation:
    """What `write_isolating` did: the refused rows and how many write attempts it took."""

    refused: list[tuple[int, str]] = field(default_factory=list)
    """(row index in the written rows, reason), in row order of discovery."""
    attempts: int = 0


class _Queue:
    """Row indexes still to write, in order, as a list of index arrays (front first): taking and
    putting back cost the size of the attempt, never of the whole batch."""

    def __init__(self, n: int) -> None:
        self.parts: list[np.ndarray] = [np.arange(n, dtype=np.int64)] if n else []

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def take(self, size: int) -> np.ndarray:
        taken: list[np.ndarray] = []
        while size > 0 and self.parts:
            head = self.parts[0]
            if len(head) <= size:
                taken.append(self.parts.pop(0))
                size -= len(head)
            else:
                taken.append(head[:size])
                self.parts[0] = head[size:]
                size = 0
        return taken[0] if len(taken) == 1 else np.concatenate(taken)

    def put_back(self, rows: np.ndarray) -> None:
        if len(rows):
            self.parts.insert(0, rows)


async def write_isolating(tx: Transaction, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str], payload: object | None) -> Isolation:
    """Write `rows` (see the module docstring); `payload` is the destination's encoding of all of
    them, used when an attempt is the whole batch."""
    result = Isolation()
    n = rows.num_rows
    queue = _Queue(n)
    size = n  # rows in the next attempt
    fresh = n  # rows in the attempt after a re-write of an accepted prefix
    failing = 0  # while narrowing: rows known to hold a refused row that was not named
    last = -1  # the last refused row, for the distance to the next one
    rewriting = False  # the attempt is the accepted prefix of a refused row, written again
    while queue:
        attempt = queue.take(size)
        result.attempts += 1
        whole = len(attempt) == n
        subset = rows if whole else rows.take(pa.array(attempt))
        try:
            async with tx.savepoint():
                await tx.write_rows(table, subset, columns, key, payload if whole else None)
        except RowsPartlyRefused as partly:
            # The write found its refused rows itself and wrote the others: kept (the savepoint
            # keeps what a partly refused write did).
            result.refused.extend((int(attempt[row]), reason) for row, reason in partly.rows)
            last = int(attempt[partly.rows[-1][0]]) if partly.rows else last
            failing = max(0, failing - len(attempt))
            size = max(1, failing // 2) if failing else fresh
            rewriting = False
            continue
        except RowsRefused as refused:
            # The savepoint undid the attempt.
            if whole:
                screened = await tx.screen_rows(table, rows, columns, key)
                if screened:
                    # Refused rows the destination can tell at once go together; the rest is
                    # written next in one attempt, and whatever it still refuses is found below.
                    result.refused.extend(screened)
                    kept = np.ones(n, dtype=bool)
                    kept[[row for row, _ in screened]] = False
                    rest = np.flatnonzero(kept)
                    queue.put_back(rest)
                    size = fresh = max(1, len(rest))
                    continue
            named = refused.row if refused.row is not None and 0 <= refused.row < len(attempt) else None
            if named is None and len(attempt) > 1:
                queue.put_back(attempt)
                failing = len(attempt)
                size = failing // 2
                continue
            at = named or 0
            row = int(attempt[at])
            result.refused.append((row, refused.reason))
            failing = 0
            fresh = max(_MIN_ATTEMPT, 2 * (row - last))
            last = row
            queue.put_back(attempt[at + 1:])
            queue.put_back(attempt[:at])
            # The accepted prefix goes again with fresh rows behind it (one attempt per refused
            # row) until it outgrows them; then alone, so no row is sent again and again.
            rewriting = at > _PREFIX_SHARE * fresh
            size = at if rewriting else at + fresh
            continue
        if failing:
            failing -= len(attempt)  # the refused row is in what follows the half that passed
            size = max(1, failing // 2) if failing else fresh
        elif rewriting:
            size, rewriting = fresh, False
        else:
            fresh = size = 2 * fresh  # no refused row among the fresh rows: take more at once
    return result
