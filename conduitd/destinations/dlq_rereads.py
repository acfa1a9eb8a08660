"""Rejects found again by a re-read (`Reject.reread`: a polling source's lag window reads the rows
below its high water again after each catch-up, and each run or restart hands them over once
more): a DLQ table that already holds an identical entry does not take the reject again, so a
rejected row still within the window has one DLQ entry however many runs read it.

Identical means the same pipeline, partition, rule, reason and payload (the row as read, key and
cursor included). The position is not compared: a reject of a rule or a cast points at the start
of the chunk its row came in, which for a re-read is the high water of that run, not the position
the first entry was written at. Any other reject is written as before, and a re-read reject with
no identical entry (a late row, a row changed since, an entry replayed or removed) is written too:
nothing is lost. Destinations whose DLQ is a table (the SQL bookkeeping, ClickHouse) apply this;
a DLQ file or topic outside the destination (`dlq_sinks`) is written at least once and takes such
a reject again at every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from conduitd.core.records import Reject

Identity = tuple[str | None, str | None, str | None, str | None]
"""(partition, rule, reason, payload) of a DLQ entry, as the DLQ stores them."""


def _same(value: str | None) -> str | None:
    return value


def identity(reject: Reject, text: Callable[[str | None], str | None] = _same) -> Identity:
    """The entry `reject` becomes; `text` is how the store keeps a text (PostgreSQL drops NUL)."""
    return reject.partition, reject.rule, text(reject.reason), text(reject.payload)


def reread_payloads(rejects: Sequence[Reject], text: Callable[[str | None], str | None] = _same) -> list[str]:
    """The distinct payloads (as stored) of the re-read rejects: what to look up in the DLQ."""
    found = {text(r.payload) for r in rejects if r.reread}
    return sorted(p for p in found if p is not None)


def unseen(rejects: Sequence[Reject], stored: Iterable[Identity],
           text: Callable[[str | None], str | None] = _same) -> list[Reject]:
    """`rejects` without the re-read ones whose entry is in `stored` (the DLQ's entries of the
    pipeline with those payloads) or comes earlier in `rejects`, compared exactly."""
    held = set(stored)
    kept: list[Reject] = []
    for reject in rejects:
        if reject.reread:
            entry = identity(reject, text)
            if entry in held:
                continue
            held.add(entry)
        kept.append(reject)
    return kept
