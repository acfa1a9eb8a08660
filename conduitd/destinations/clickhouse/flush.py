"""A batch written to ClickHouse effectively once, without transactions.

Every row a batch writes carries the batch's id (`_conduitd_batch`, new for each attempt) and
version (`_conduitd_version`, above every version the pipeline stored before). The flush writes,
in this order, each step one INSERT of one block (atomic in ClickHouse):

    intent        conduitd_batches: (pipeline, batch, the tables it will write, `open`)
    deletions     rows of upsert tables flagged deleted (a newer version of the key)
    rows          the batch's rows (upsert: the newer version of each key)
    dlq           the DLQ rows
    replays       DLQ rows replayed, flagged deleted
    history       schema history rows
    checkpoints   every partition's new position, one block: THE COMMIT POINT
    done          conduitd_batches: `done` (a batch without checkpoints commits here)

A failure before the commit point (an exception, a cancellation) deletes the batch's rows from
each table (`DELETE ... WHERE _conduitd_batch = id`) and marks it `aborted` before the error
leaves the transaction. When that cannot run (the process was killed, the server is gone), the
batch stays `open`, and `Books.recover` settles it before the pipeline's next batch or when the
pipeline loads its checkpoints on start: committed (its checkpoint is the stored one) -> done;
otherwise its rows are deleted. So once recovery ran, a table holds each batch exactly once.
What readers may see: a batch's rows from the `rows` step on, before its checkpoint; if the
batch then fails they disappear again (at once, or at the pipeline's restart after a kill). A
reader that must never see them adds `_conduitd_batch NOT IN (SELECT batch FROM
conduitd_batches FINAL WHERE state = 'open')` (this hides a committed batch too until its `done`
is logged). Upsert tables are read with FINAL (before merges a key may have several versions,
and deletions are rows flagged `_conduitd_deleted`, which FINAL leaves out).

Assumed: one writer per pipeline (as with every destination without leases). Settling a batch
left `open` deletes its rows, so a second process writing the same pipeline at the same moment
could have its batch undone under it; the checkpoint check (`compare_and_set`) reads and then
inserts, which detects a stale start but is no lock. A block larger than the server's
`max_insert_block_size` (1,048,576 rows by default) is inserted as several parts: still undone
by the batch's id, but readers may see part of it during the flush.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from conduitd.core.records import Reject, position_text
from conduitd.destinations.clickhouse.books import CHECKPOINTS, HISTORY, Books
from conduitd.destinations.clickhouse.dialect import BATCH, DELETED, VERSION
from conduitd.destinations.clickhouse.transaction import Pending
from conduitd.destinations.rollback import finish
from conduitd.errors import TransientError

STEPS = ("intent", "deletions", "rows", "dlq", "replays", "history", "checkpoints", "done")
StepHook = Callable[[str], None]
"""Called after each step that wrote something (tests inject failures with it:
`ClickHouseDestination.after_step`); `intent` and `done` always."""


class Versions:
    """Versions and DLQ/history ids of one destination: increasing, from the clock where it is ahead."""

    def __init__(self) -> None:
        self.last = 0
        self.last_id = 0

    def next(self, floor: int) -> int:
        self.last = max(time.time_ns(), floor, self.last + 1)
        return self.last

    def ids(self, count: int) -> list[int]:
        first = max(time.time_ns() // 1000 * 1000, self.last_id + 1)
        self.last_id = first + count - 1
        return list(range(first, first + count))


def _tagged(rows: pa.Table, batch: str, version: int, deleted: int) -> pa.Table:
    n = rows.num_rows
    return (rows.append_column(BATCH, pa.repeat(pa.scalar(batch), n).cast(pa.string()))
            .append_column(VERSION, pa.repeat(pa.scalar(version, pa.uint64()), n))
            .append_column(DELETED, pa.repeat(pa.scalar(deleted, pa.uint8()), n)))


def _tables(pending: Pending) -> list[str]:
    names = {t for t, _ in pending.rows} | {t for t, _ in pending.deletions} | {t for t, _, _ in pending.rejects}
    names |= {t for t, _ in pending.replayed} | ({HISTORY} if pending.history else set())
    return sorted(names)


async def flush(books: Books, pending: Pending, versions: Versions, hook: StepHook | None = None) -> None:
    """Write `pending` as the module docstring says; raises (after undoing what it wrote, where it
    can) when the commit point was not reached."""
    if pending.empty():
        return
    pipeline, batch = pending.pipeline or "", uuid.uuid4().hex
    version, tables = versions.next(pending.version_floor), _tables(pending)
    now = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))

    def step(name: str) -> None:
        if hook is not None:
            hook(name)

    await books.log_batch(pipeline, batch, tables, "open", version)
    step("intent")
    reached = False
    try:
        for table, keys in pending.deletions:
            await books.client.insert(books.table(table), _tagged(keys, batch, version, 1))
            step("deletions")
        for table, rows in pending.rows:
            await books.client.insert(books.table(table), _tagged(rows, batch, version, 0))
            step("rows")
        for table, owner, rejects in pending.rejects:
            await books.client.insert(books.table(table), _tagged(_dlq_rows(rejects, owner, versions, now), batch,
                                                                  version, 0))
            step("dlq")
        for table, ids in pending.replayed:
            await books.client.insert(books.table(table), _tagged(pa.table({"id": pa.array(ids, pa.uint64())}),
                                                                  batch, version, 1))
            step("replays")
        if pending.history:
            await books.client.insert(books.table(HISTORY), _history(pending, versions, now, batch))
            step("history")
        if pending.checkpoints:
            reached = True  # from here on, whether it committed is known only by reading the checkpoints
            await books.client.insert(books.table(CHECKPOINTS), _checkpoints(pending, batch, version, now))
            step("checkpoints")
        else:
            await books.log_batch(pipeline, batch, tables, "done", version + 1)
    except BaseException:
        await finish(_abort(books, pipeline, batch, tables, version, reached))
        raise
    if pending.checkpoints:
        with contextlib.suppress(TransientError):  # committed all the same: `Books.recover` marks it done
            await books.log_batch(pipeline, batch, tables, "done", version + 1)
    step("done")


async def _abort(books: Books, pipeline: str, batch: str, tables: list[str], version: int, reached: bool) -> None:
    """Undo the batch unless it committed; leave it `open` for `Books.recover` when that fails."""
    try:
        if reached and await books.committed(pipeline, batch):
            await books.log_batch(pipeline, batch, tables, "done", version + 1)
            return
        await books.undo(batch, tables)
        await books.log_batch(pipeline, batch, tables, "aborted", version + 1)
    except Exception:  # noqa: BLE001 - the original failure is the one raised; recovery settles the batch
        return


def _dlq_rows(rejects: list[Reject], pipeline: str, versions: Versions, now: pa.Scalar) -> pa.Table:
    return pa.table({
        "id": pa.array(versions.ids(len(rejects)), pa.uint64()),
        "pipeline": [pipeline] * len(rejects),
        "partition": pa.array([r.partition for r in rejects], pa.string()),
        "position": pa.array([position_text(r.position) for r in rejects], pa.string()),
        "rule": [r.rule for r in rejects], "reason": [r.reason for r in rejects],
        "column_name": pa.array([r.column for r in rejects], pa.string()),
        "value": pa.array([r.value for r in rejects], pa.string()),
        "payload": pa.array([r.payload for r in rejects], pa.string()),
        "created_at": pa.repeat(now, len(rejects))})


def _history(pending: Pending, versions: Versions, now: pa.Scalar, batch: str) -> pa.Table:
    changes = [(pipeline, c) for pipeline, cs in pending.history for c in cs]
    return pa.table({
        "id": pa.array(versions.ids(len(changes)), pa.uint64()), "applied_at": pa.repeat(now, len(changes)),
        "pipeline": [p for p, _ in changes], "table_name": [c.table for _, c in changes],
        "change": [c.kind for _, c in changes], "column_name": pa.array([c.column for _, c in changes], pa.string()),
        "old_definition": pa.array([c.old for _, c in changes], pa.string()),
        "new_definition": pa.array([c.new for _, c in changes], pa.string()),
        "ddl": pa.array([c.ddl for _, c in changes], pa.string()), "applied": [c.applied for _, c in changes],
        BATCH: [batch] * len(changes)})


def _checkpoints(pending: Pending, batch: str, version: int, now: pa.Scalar) -> pa.Table:
    rows = pending.checkpoints
    return pa.table({
        "pipeline": [p for p, _, _ in rows], "partition": [part for _, part, _ in rows],
        "position": [pos for _, _, pos in rows], "batch": [batch] * len(rows),
        "version": pa.array([version] * len(rows), pa.uint64()), "updated_at": pa.repeat(now, len(rows))})


__all__ = ["STEPS", "StepHook", "Versions", "flush"]
