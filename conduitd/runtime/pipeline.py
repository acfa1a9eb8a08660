"""One pipeline: a reader task fills a bounded queue with chunks, a writer task cuts batches from
it and commits each one (rows, DLQ rows and positions in one destination transaction), then
acknowledges the source.

Retriable failures (connection lost, serialization failure, server down) are retried as the
pipeline's `RetryPolicy` says (exponential backoff and jitter) while readiness is red; under
--once they are retried for `service.once_retry_timeout` and then end the run with exit code 5.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from conduitd.config import Config, PipelineConfig
from conduitd.core.prepare import Prepared
from conduitd.core.records import Position
from conduitd.destinations import Destination, make_destination
from conduitd.dlq_sinks import DlqSink, open_sink
from conduitd.errors import CheckpointConflict, ConduitError, ConfigError, DependencyUnreachable, describe
from conduitd.ops import telemetry
from conduitd.ops.activity import Activity, BatchRecord, stage_seconds
from conduitd.ops.events import EventHub
from conduitd.ops.metrics import Metrics, PipelineStatus
from conduitd.runtime.batching import END, FLUSH, ChunkQueue, cut_batches
from conduitd.runtime.commit import CommitResult, Committer, Refreshes, refresh_problem, written_as
from conduitd.runtime.leases import PipelineLeases, replica_id
from conduitd.runtime.retry import RetryPolicy
from conduitd.runtime.tuning import BatchSizer
from conduitd.sources import Source, open_source
from conduitd.sources.base import Leases

log = logging.getLogger(__name__)
T = TypeVar("T")
PreparedQueue = asyncio.Queue[Prepared | None]


class Stopping(Exception):
    """A stop was requested while work that holds no records (connecting, loading checkpoints)
    was waiting for the destination: that work is given up, as nothing depends on it."""


class Pipeline:
    """See the module docstring. Also the `Checkpoints` a source asks when partitions move."""

    def __init__(self, config: Config, pipeline: PipelineConfig, metrics: Metrics, *, once: bool,
                 events: EventHub | None = None) -> None:
        self.pipeline = pipeline
        self.events = events or EventHub()
        self.activity = Activity()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._paused = asyncio.Event()
        self._cutter_idle = asyncio.Event()
        self._committing = False
        self._queues: tuple[ChunkQueue, PreparedQueue] | None = None
        self.service = config.service
        self.destination: Destination = make_destination(config.destination(pipeline.destination))
        self.source: Source = open_source(config.source(pipeline.source), pipeline, config.service, once=once)
        self.metrics = metrics
        self.once = once
        self.status = PipelineStatus(pipeline.name, pipeline.source, pipeline.destination, pipeline.table_name)
        self._extra = {"pipeline": pipeline.name}
        self._reconnect = False
        self._commit_lock = asyncio.Lock()  # one transaction at a time; also guards the connection
        self.dlq: DlqSink | None = open_sink(pipeline.dlq)
        problem = refresh_problem(pipeline, self.destination, once=once)
        if problem is not None:
            raise ConfigError(problem)
        self.staging: str | None = None
        """`full_refresh`: the staging table this run's batches go to."""
        if isinstance(self.destination, Refreshes) and pipeline.mode == "full_refresh":
            self.staging = self.destination.refresh_table(pipeline.table_name)
        self.committer = Committer(self.destination, written_as(pipeline, self.staging), self.dlq)
        self._read_to_end = False  # the source ended by itself (not stopped): a full refresh may swap
        self._stop = asyncio.Event()
        self.retry = RetryPolicy.for_service(config.service, once=once)
        self.sizer = BatchSizer(pipeline.batch, source=self.source)
        self.status.tuning_report = self.sizer.report
        self.leases: Leases | None = None
        if self.destination.capabilities.leases:
            self.leases = PipelineLeases(self.with_destination, pipeline.name, pipeline.source,
                                         replica_id(config.service.replica_id))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until the source is done (--once) or `stop` is set, committing what was read."""
        name = self.pipeline.name
        self._stop = stop
        try:
            try:
                await self._retrying("connect", self._connect, holds_records=False)
            except Stopping:
                log.info("pipeline %s stopped before it could connect: nothing was read", name, extra=self._extra)
                self._set_state("stopped", ready=False)
                return
            if self.staging is not None:
                try:
                    await self._retrying("start the full refresh", self._begin_refresh, holds_records=False)
                except Stopping:
                    self._set_state("stopped", ready=False)
                    return
            self._set_state("running", ready=True)
            if not self.destination.capabilities.atomic_checkpoint:
                log.warning("destination %s does not store positions in the same transaction as rows: "
                            "a crash between the two repeats a batch (at least once)", self.pipeline.destination,
                            extra=self._extra)
            log.info("pipeline %s started: %s -> %s.%s", name, self.pipeline.source, self.pipeline.destination,
                     self.pipeline.table_name, extra=self._extra)
            queue = ChunkQueue(max_records=lambda: 2 * self.sizer.limit)  # read ahead about two batches
            prepared: PreparedQueue = asyncio.Queue(maxsize=1)
            self._queues = (queue, prepared)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(queue, stop))
                tasks.create_task(self._prepare(queue, prepared))
                tasks.create_task(self._commit_all(prepared))
            if self.staging is not None:
                await self._finish_refresh()
            self._set_state("done" if self.once else "stopped", ready=False)
        except BaseException as exc:
            self._set_state("failed", ready=False)
            self.status.last_error = describe(exc)
            raise
        finally:
            await asyncio.shield(self.source.close())
            if self.dlq is not None:
                await asyncio.shield(self.dlq.close())
            await asyncio.shield(self.destination.close())

    # -- Checkpoints, for the source ---------------------------------------------------------

    async def committed(self) -> dict[str, Position]:
        async with self._commit_lock:
            positions = await self._retrying("load checkpoints", self._load_checkpoints, holds_records=False)
        self.status.positions.update(positions)
        for partition, position in positions.items():
            self.status.positions_at_start.setdefault(partition, position)
        return positions

    async def revoke(self) -> None:
        async with self._commit_lock:
            pass  # the source's epoch has moved on: nothing older is committed after this

    async def flush(self) -> None:
        if self._queues is not None:
            await self._queues[0].put(FLUSH)  # after the chunks already queued

    # -- the two tasks -----------------------------------------------------------------------

    async def _read(self, queue: ChunkQueue, stop: asyncio.Event) -> None:
        try:
            async for chunk in self.source.chunks(self, stop):
                if not self._resumed.is_set() and not await self._until_resumed(stop):
                    break  # stopped while paused: the chunk in hand is read again next time
                await queue.put(chunk)  # blocks when full: backpressure on the source
            self._read_to_end = not stop.is_set()
        except Stopping:
            pass  # stopped while a partition waited for its checkpoint: what is queued still commits
        await queue.put(END)

    async def _prepare(self, queue: ChunkQueue, prepared: PreparedQueue) -> None:
        """Cut batches and prepare each (rules, casts, encoding) while the previous one commits."""
        async for batch in cut_batches(queue, self.pipeline.batch, sizer=self.sizer, idle=self._cutter_idle):
            await prepared.put(await self.committer.prepare(batch))
        await prepared.put(None)

    async def _commit_all(self, prepared: PreparedQueue) -> None:
        while (ready := await prepared.get()) is not None:
            # Log lines of the batch's commit carry its trace id (JSON logs, tracing on).
            with telemetry.batch_trace(self.pipeline.name, ready.batch.timings):
                await self._commit_one(ready)

    async def _commit_one(self, ready: Prepared) -> None:
        batch = ready.batch
        started = time.perf_counter()
        self._committing = True
        try:
            async with self._commit_lock:
                if batch.epoch != self.source.epoch:
                    log.info("dropping a batch read before partitions moved; it is read again from the "
                             "checkpoint", extra=self._extra)
                    self._record(batch.records, "dropped")
                    return
                result = await self._retrying("commit", lambda p=ready: self._commit(p))  # type: ignore[misc]
        except CheckpointConflict as conflict:
            # A full refresh's positions are its own run's: a conflict means another run of
            # the pipeline started over meanwhile (and emptied the staging table).
            self._record(batch.records, "conflict", error=conflict)
            if self.staging is not None or not await self.source.resync():
                raise
            log.warning("%s; resuming from the committed positions", conflict, extra=self._extra)
            self.metrics.conflicts.labels(self.pipeline.name).inc()
            return
        except Exception as exc:
            self._record(batch.records, "failed", error=exc)
            raise
        finally:
            self._committing = False
        await self.source.acknowledge(batch.end)
        seconds = time.perf_counter() - started
        self._account(ready, result, seconds)
        self._record(batch.records, "committed", result=result, seconds=seconds, stages=batch.timings)
        self._settle_pause()
        telemetry.record_batch(self.pipeline.name, batch.timings, {
            "conduitd.records": batch.records, "conduitd.rows_written": result.rows_written,
            "conduitd.dlq_rows": result.dlq_rows, "conduitd.partitions": len(batch.end)})

    # -- pause and resume --------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """A pause was asked for (the pipeline may still be committing what it had read)."""
        return not self._resumed.is_set()

    @property
    def drained(self) -> bool:
        """Paused, and everything read before the pause is committed."""
        if self._resumed.is_set():
            return False
        if self._queues is None:
            return True  # not reading yet (connecting) or no longer
        queue, prepared = self._queues
        return queue.empty() and prepared.empty() and self._cutter_idle.is_set() and not self._committing

    def pause(self) -> None:
        """Stop reading; what is queued is still committed (state `pausing`, then `paused`)."""
        if self._resumed.is_set():
            self._resumed.clear()
            if self.status.state in ("running", "retrying", "starting"):
                self._set_state("pausing", ready=self.status.ready)
            self._settle_pause()

    def resume(self) -> None:
        """Read on from where the pipeline paused."""
        if not self._resumed.is_set():
            self._resumed.set()
            self._paused.clear()
            if self.status.state in ("pausing", "paused"):
                self._set_state("running", ready=self.status.ready)

    def _settle_pause(self) -> None:
        if self.status.state == "pausing" and self.drained:
            self._set_state("paused", ready=self.status.ready)
        if self.status.state == "paused":
            self._paused.set()

    async def wait_paused(self, within: float) -> bool:
        """After `pause`: wait until what was queued is committed (True), at most `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._paused.is_set() and self.paused and loop.time() < deadline:
            self._settle_pause()  # the cutter may have gone idle without a commit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._paused.wait(), 0.1)
        return self._paused.is_set()

    async def _until_resumed(self, stop: asyncio.Event) -> bool:
        """Wait while paused; True when resumed, False when stopped first."""
        resumed = asyncio.ensure_future(self._resumed.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((resumed, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            resumed.cancel()
            stopped.cancel()
        return self._resumed.is_set() and not stop.is_set()

    def _record(self, records: int, outcome: str, *, result: CommitResult | None = None, seconds: float = 0.0,
                stages: Any = None, error: BaseException | None = None) -> None:
        entry = BatchRecord(
            at=time.time(), records=records, outcome=outcome, seconds=seconds,
            rows_written=result.rows_written if result else 0, dlq_rows=result.dlq_rows if result else 0,
            rows_deleted=result.rows_deleted if result else 0,
            stages=stage_seconds(stages) if stages is not None else {},
            error_class=type(error).__name__ if error is not None else None)
        self.activity.record(entry)
        self.events.publish("batch", self.pipeline.name, **entry.as_dict())

    # -- destination steps -------------------------------------------------------------------

    async def _connect(self) -> None:
        await self.destination.close()
        await self.destination.open()
        await self.destination.setup(self.pipeline)

    async def _begin_refresh(self) -> None:
        async def begin(destination: Destination) -> None:
            assert isinstance(destination, Refreshes) and self.staging is not None
            await destination.begin_refresh(self.pipeline, self.staging)

        await self.with_destination(begin)

    async def _finish_refresh(self) -> None:
        """Swap the staging rows in when the source was read to its end; otherwise (stopped)
        the table keeps its rows and the next run starts over."""
        name, staging = self.pipeline.name, self.staging
        if not self._read_to_end:
            log.warning("pipeline %s stopped before its source was read to the end: table %s keeps its previous "
                        "rows; the next run loads it again from the start", name, self.pipeline.table_name,
                        extra=self._extra)
            return

        async def swap(destination: Destination) -> int:
            assert isinstance(destination, Refreshes) and staging is not None
            return await destination.finish_refresh(self.pipeline, staging)

        rows = await self._retrying("replace the table's rows", lambda: self.with_destination(swap))
        self.status.positions.clear()
        log.info("pipeline %s: table %s replaced by this run's %d row(s)", name, self.pipeline.table_name, rows,
                 extra=self._extra)

    async def _load_checkpoints(self) -> dict[str, Position]:
        if self._reconnect:
            await self._connect()
            self._reconnect = False
        try:
            return await self.destination.load_checkpoints(self.pipeline.name)
        except ConduitError as exc:
            self._reconnect = exc.retriable
            raise

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        read_keys = getattr(self.destination, "read_keys", None)
        if read_keys is None:
            raise ConfigError(f"pipeline {self.pipeline.name!r}: destination {self.pipeline.destination!r} cannot "
                              "list its keys: deletes.key_scan needs a SQL destination")
        table = self.pipeline.table_name

        async def read(_: Destination) -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = await read_keys(table, columns, after, limit)
            return found

        return await self.with_destination(read)

    async def with_destination(self, action: Callable[[Destination], Awaitable[T]]) -> T:
        """`action` on the destination between commits (leases), reconnecting first after a lost
        connection; a retriable failure marks the connection for the next caller to renew."""
        async with self._commit_lock:
            try:
                if self._reconnect:
                    await self._connect()
                    self._reconnect = False
                return await action(self.destination)
            except ConduitError as exc:
                self._reconnect = exc.retriable
                raise

    async def _commit(self, prepared: Prepared) -> CommitResult:
        try:
            if self._reconnect:
                await self._connect()
                # The connection may have dropped after COMMIT reached the server: writing the
                # batch again would duplicate it (the compare-and-set would refuse it anyway).
                done = await self.committer.committed_already(prepared)
                self._reconnect = False
                if done is not None:
                    return done
            return await self.committer.commit(prepared)
        except ConduitError as exc:
            self._reconnect = exc.retriable
            raise

    # -- status ------------------------------------------------------------------------------

    def _account(self, prepared: Prepared, result: CommitResult, seconds: float) -> None:
        name = self.pipeline.name
        batch = prepared.batch
        status = self.status
        status.rows_read += batch.records
        status.rows_written += result.rows_written
        status.dlq_rows += result.dlq_rows
        status.batches += 1
        status.last_commit = time.time()
        status.positions.update(batch.end)
        self.refresh_lag()
        self.metrics.rows_read.labels(name).inc(batch.records)
        self.metrics.rows_written.labels(name).inc(result.rows_written)
        self.metrics.batches.labels(name).inc()
        self.metrics.commit_seconds.labels(name).observe(seconds)
        self.metrics.batch_rows.labels(name).observe(batch.records)
        self.sizer.observe(batch.records, batch.nbytes, seconds, batch.timings)
        self.metrics.last_commit.labels(name).set(status.last_commit)
        for rule, count in result.dlq_rows_by_rule.items():
            self.metrics.dlq_rows.labels(name, rule).inc(count)
        status.rows_deleted += result.rows_deleted
        for rule, count in result.dlq_rows_by_rule.items():
            status.dlq_rows_by_rule[rule] = status.dlq_rows_by_rule.get(rule, 0) + count
        for (rule, action), count in result.quality.items():
            status.quality.setdefault(rule, {}).setdefault(action, 0)
            status.quality[rule][action] += count
            self.metrics.quality.labels(name, rule, action).inc(count)
        if result.warned:
            log.warning("%d row(s) written despite warn rules in this batch", len(result.warned),
                        extra=self._extra)
        for violation in result.warned[:5]:
            log.warning("quality rule %r (warn): column %r value %r", violation.rule, violation.column,
                        violation.value, extra=self._extra)
        for change in result.changes:
            status.schema_changes.append({"table": change.table, "change": change.kind, "column": change.column,
                                          "old": change.old, "new": change.new, "ddl": change.ddl,
                                          "applied": change.applied})
        log.debug("committed batch: %d rows, %d rejected, %.3fs", result.rows_written, result.dlq_rows,
                  seconds, extra=self._extra)

    def refresh_lag(self) -> None:
        """Copy the source's lag and health into /status and /metrics."""
        self.status.lag = self.source.lag()
        self.activity.sample_lag(self.status.lag)
        for partition, units in self.status.lag.items():
            for unit, value in units.items():
                self.metrics.lag.labels(self.pipeline.name, partition, unit).set(value)
        owners = getattr(self.source, "leases", None)
        self.status.leases = owners() if callable(owners) else {}
        problem = self.source.problem()
        self.status.problem = problem
        self._settle_pause()
        self.metrics.source_problem.labels(self.pipeline.name).set(1 if problem else 0)
        if self.status.state == "running":
            self.status.ready = problem is None
            self.status.last_error = problem or self.status.last_error
            self.metrics.ready.labels(self.pipeline.name).set(0 if problem else 1)

    async def _unless_stopped(self, work: Awaitable[T]) -> T:
        """`work`'s result, or Stopping once a stop is requested first (`work` is cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled() and self._stop.is_set():
            raise Stopping
        return task.result()

    def _set_state(self, state: str, *, ready: bool) -> None:
        if state == "running" and not self._resumed.is_set():
            state = "paused" if self.drained else "pausing"
        if state != self.status.state:
            self.events.publish("state", self.pipeline.name, state=state, previous=self.status.state)
        self.status.state = state
        self.status.ready = ready
        self.metrics.ready.labels(self.pipeline.name).set(1 if ready else 0)

    async def _retrying(self, what: str, action: Callable[[], Awaitable[T]], *, holds_records: bool = True) -> T:
        """Run `action`, retrying what `self.retry` says is retriable, with its waits. Work that
        holds no records (`holds_records=False`) is given up with `Stopping` as soon as a stop is
        requested: a drain then ends at once instead of waiting out its deadline for a destination
        that is away. A commit holds records, and is retried until the drain deadline."""
        failures = 0
        first_failure: float | None = None
        while True:
            try:
                result = await (action() if holds_records else self._unless_stopped(action()))
            except Exception as exc:
                if not self.retry.is_retriable(exc):
                    raise
                now = time.monotonic()
                first_failure = first_failure or now
                failures += 1
                self._set_state("retrying", ready=False)
                if holds_records and what == "commit":
                    self._record(0, "retried", error=exc)
                self.status.last_error = str(exc)
                self.metrics.retries.labels(self.pipeline.name).inc()
                wait = self.retry.wait(failures, now - first_failure)
                if wait is None:
                    raise DependencyUnreachable(f"{what} failed for {now - first_failure:.0f}s: {exc}") from None
                log.warning("%s failed, retrying in %.1fs: %s", what, wait, exc, extra=self._extra)
                pause = asyncio.sleep(wait)
                await (pause if holds_records else self._unless_stopped(pause))
                continue
            if first_failure is not None:
                log.info("%s succeeded again", what, extra=self._extra)
                self._set_state("running", ready=True)
                self.status.last_error = None
            return result
