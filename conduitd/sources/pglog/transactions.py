"""Decoded pgoutput messages grouped into the transactions of one table, and the snapshot filter
that decides which of them the initial snapshot already holds. Pure.

The hand-over from the snapshot to the log (the watermark technique, exact): the slot exists
before the snapshot is read (`conduitd cdc setup` creates it), so every transaction that commits
after the slot's start is in the log, and every one that committed before is in the snapshot.
The snapshot is read in one REPEATABLE READ transaction; in it, `pg_current_snapshot()` says which
transactions it sees (xid below xmax and not in the in-progress list), and
`pg_current_wal_insert_lsn()`, read just after, bounds their commit records (a transaction's
commit record is written before it becomes visible). A log transaction is applied exactly when
the snapshot does not see it: when it ends after that bound, or its xid is not visible. So no
change is missed (those not in the snapshot come from the log) and none is applied twice.

A snapshot interrupted by a crash resumes after its last committed key in a new snapshot, keeping
the first one's filter: rows before that key are exactly as in the first snapshot and get every
later change; rows after it may already hold some of those changes, which the log then writes
again: each change carries the whole row (or its key for a delete), so replaying it in commit
order ends in the same rows (no duplicate in upsert mode)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from conduitd.sources.pglog import pgoutput as po
from conduitd.sources.pglog.rows import Change

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    xmin: int
    xmax: int
    running: frozenset[int]
    until: int
    """The WAL insert position read in the snapshot: every transaction it sees ended by here."""

    @classmethod
    def parse(cls, snapshot: str, until: str) -> SnapshotFilter:
        """From `pg_current_snapshot()::text` (`xmin:xmax:xip,...`) and an LSN text."""
        xmin, xmax, running = snapshot.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x), po.parse_lsn(until))

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> SnapshotFilter | None:
        if not data:
            return None
        return cls(int(data["xmin"]), int(data["xmax"]), frozenset(data["xip"]), po.parse_lsn(data["until"]))

    def dump(self) -> dict[str, Any]:
        return {"xmin": self.xmin, "xmax": self.xmax, "xip": sorted(self.running), "until": po.lsn_text(self.until)}

    def seen(self, xid: int, end_lsn: int) -> bool:
        """Whether the snapshot holds the effects of the transaction `xid` (32 bits, as pgoutput
        sends it) that ended at `end_lsn`."""
        if end_lsn > self.until:
            return False
        # Back to 64 bits: the xid nearest xmax with these low 32 bits (xids compare modulo 2**32).
        diff = (xid - self.xmax) & 0xFFFFFFFF
        full = self.xmax + (diff - (1 << 32) if diff >= 1 << 31 else diff)
        return full < self.xmax and full not in self.running


@dataclass(slots=True)
class Transaction:
    xid: int
    end_lsn: int
    commit_time: int
    messages: int = 0
    """How many slot messages it spans (to size the next peek)."""
    truncated: bool = False
    raw: list[tuple[po.Relation, bytes]] = field(default_factory=list)
    """Its row messages for the table, not decoded yet (with their relation as it then stood)."""
    deletes: bool = True
    delete_rows: bool = False
    _changes: list[Change] | None = None

    @property
    def changes(self) -> list[Change]:
        """The changes, decoded on first use: a peek reads ahead, and a transaction handed over
        already is never decoded (see `group`)."""
        if self._changes is None:
            self._changes = []
            for relation, data in self.raw:
                message = po.decode(data)
                assert isinstance(message, (po.Insert, po.Update, po.Delete))
                if isinstance(message, po.Insert) and po.UNCHANGED not in message.new:  # the common case, short
                    self._changes.append(Change(dict(zip(relation.names, message.new, strict=False)),  # type: ignore[arg-type]
                                                op="insert"))
                else:
                    self._changes.extend(_changes(relation, message, deletes=self.deletes or self.delete_rows,
                                                  mask=not self.delete_rows))
            self.raw = []
        return self._changes


TypeOf = Callable[[int, int], str]
"""A column's SQL type name from its type oid and modifier (`format_type`)."""
_ROW_KINDS = frozenset(b"IUD")
_RELID = struct.Struct("!I").unpack_from


def _values(relation: po.Relation, values: po.Tuple, old: po.Tuple | None) -> tuple[dict[str, str | None], str]:
    """Column values by name; an unchanged TOASTed value is taken from the old row when it was
    sent (replica identity full), else the change cannot be written whole: (values, problem)."""
    if po.UNCHANGED not in values:  # the common case: every value sent (a text never equals it)
        return dict(zip(relation.names, values, strict=False)), ""  # type: ignore[arg-type]
    out: dict[str, str | None] = {}
    for i, (column, value) in enumerate(zip(relation.columns, values, strict=False)):
        if isinstance(value, po.Unchanged):
            previous = old[i] if old is not None and i < len(old) else po.UNCHANGED
            if isinstance(previous, po.Unchanged):
                return out, (f"column {column.name!r} holds a large (TOASTed) value the update did not change, "
                             "which PostgreSQL does not send: set REPLICA IDENTITY FULL on the table")
            value = previous
        out[column.name] = value
    return out, ""


def group(messages: Iterable[bytes], table: tuple[str, str], types: dict[str, str], type_of: TypeOf, *,
          deletes: bool, delete_rows: bool = False, after: int = -1) -> list[Transaction]:
    """The transactions in `messages` (whole ones, in commit order), with the changes of `table`
    only. `types` gathers the SQL type of every column seen (the latest after an ALTER TABLE);
    with `deletes` False, deletes are left out (append mode), unless `delete_rows`: then a delete
    is a plain row (op `delete`, its key or old row) that deletes nothing. A change that cannot be
    written whole is kept as a Change whose `problem` says why. Row messages are kept as bytes,
    decoded when a transaction's `changes` are first used; those of a transaction that ends at or
    before the LSN `after` (handed over already) are only counted: its commit record comes before
    `after`, a later transaction's at or after it."""
    relations: dict[int, po.Relation] = {}
    mine: set[int] = set()
    """The relids of `table` (one, unless it was dropped and made again)."""
    done: list[Transaction] = []
    current: Transaction | None = None
    skipping = False
    for data in messages:
        if data and data[0] in _ROW_KINDS and current is not None:  # kept as bytes: decoded when used
            current.messages += 1
            if not skipping and len(data) >= 5 and (relid := _RELID(data, 1)[0]) in mine:
                current.raw.append((relations[relid], data))
            continue
        message = po.decode(data)
        if isinstance(message, po.Begin):
            current = Transaction(message.xid, message.final_lsn, message.commit_time, deletes=deletes,
                                  delete_rows=delete_rows)
            skipping = message.final_lsn < after
        if current is not None:
            current.messages += 1
        if isinstance(message, po.Commit):
            if current is not None:
                current.end_lsn = message.end_lsn
                done.append(current)
            current = None
        elif isinstance(message, po.Relation):
            relations[message.relid] = message
            mine.discard(message.relid)
            if (message.namespace, message.name) == table:
                mine.add(message.relid)
                for column in message.columns:
                    types[column.name] = type_of(column.type_oid, column.type_modifier)
        elif isinstance(message, po.Truncate) and current is not None:
            current.truncated = current.truncated or any(r in mine for r in message.relids)
    return done


def _changes(relation: po.Relation, message: po.Insert | po.Update | po.Delete, *, deletes: bool,
             mask: bool) -> list[Change]:
    if isinstance(message, po.Delete):
        values, _ = _values(relation, message.old, None)
        if mask or relation.replica_identity != "f":  # the key (a row, unless the whole old row came)
            values = {c.name: values.get(c.name) for c in relation.columns if c.key} or values
        return [Change(values, delete=mask, op="delete")] if deletes else []
    old = message.old if isinstance(message, po.Update) else None
    values, problem = _values(relation, message.new, old)
    out = []
    if isinstance(message, po.Update) and message.old is not None and deletes:
        # The key changed: the row under the old key is gone.
        before, _ = _values(relation, message.old, None)
        key = {c.name: before.get(c.name) for c in relation.columns if c.key}
        if key and key != {k: values.get(k) for k in key}:
            out.append(Change(key if mask or relation.replica_identity != "f" else before, delete=mask,
                              op="delete"))
    out.append(Change(values, problem=problem, op="update" if isinstance(message, po.Update) else "insert"))
    return out

