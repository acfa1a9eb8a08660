"""What a pipeline's measured batches say about its settings (pure): a cost model of one commit
(`fixed seconds + seconds per row x rows`), where the time goes, and suggestions for the batch
size, the source's poll size and replicas. `BatchSizer.report` (in /status under `tuning`) and
`conduitd tune` show them.

The batch size suggested is the smallest whose fixed cost is at most `OVERHEAD` of its commit
and whose commit takes at least `FLOOR` of the target latency (larger ones gain little
throughput), but no larger than one that commits within the target latency or than `max_bytes`
holds. The model is fitted to the batches' sizes and commit times when
their sizes differ; when every batch had one size, the `commit` stage (checkpoint and COMMIT) is
taken as the fixed cost. Suggestions need `MIN_BATCHES` batches; every one says why.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conduitd.config import BatchConfig

MIN_BATCHES = 3
OVERHEAD = 0.1
"""The share of a commit's time the fixed cost may take at the suggested batch size."""
BUSY = 0.8
"""A destination committing this share of the time or more is what limits throughput."""
AIM = 0.9
"""Sizes are suggested for this share of the target latency: headroom for noise."""
FLOOR = 0.1
"""Batches are suggested to commit in at least this share of the target latency: per-batch costs
outside the commit (a chunk's decode, the rules, round trips) cannot be told apart from one size's
measurements, and a commit this long amortizes them."""
Suggestion = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Observation:
    """One committed batch."""

    records: int
    nbytes: int
    seconds: float
    """Time to write and commit the batch."""
    stages: dict[str, float]
    """Seconds per stage (poll, decode, quality, schema, write, commit): each from its first start to
    its last end in the batch, so poll and decode (one per chunk) include the waits between chunks."""
    limit: int
    """The size in force when the batch committed."""
    at: float
    """When it committed (monotonic seconds)."""


@dataclass(frozen=True, slots=True)
class CostModel:
    """Seconds to write and commit `n` rows: `fixed + per_row * n`."""

    fixed: float
    per_row: float
    basis: str
    """`fit` (batches of several sizes) or `commit stage` (one size: the commit step is the fixed cost)."""

    def seconds(self, rows: float) -> float:
        return self.fixed + self.per_row * rows

    def rows_per_second(self, rows: float) -> float:
        return rows / self.seconds(rows) if rows > 0 else 0.0


def cost_model(recent: Sequence[Observation]) -> CostModel | None:
    """The commit cost of the batches in `recent` (None with fewer than MIN_BATCHES)."""
    points = [(o.records, o.seconds) for o in recent if o.records > 0 and o.seconds > 0]
    if len(points) < MIN_BATCHES:
        return None
    sizes = [n for n, _ in points]
    if max(sizes) >= 1.5 * min(sizes):
        mean_n = statistics.fmean(sizes)
        mean_t = statistics.fmean(t for _, t in points)
        spread = sum((n - mean_n) ** 2 for n in sizes)
        per_row = sum((n - mean_n) * (t - mean_t) for n, t in points) / spread
        fixed = mean_t - per_row * mean_n
        if per_row > 0 and fixed >= 0:
            return CostModel(fixed, per_row, "fit")
        if per_row > 0:  # noise put the intercept below zero: no fixed cost measurable
            return CostModel(0.0, sum(n * t for n, t in points) / sum(n * n for n in sizes), "fit")
    rows = statistics.median(sizes)
    seconds = statistics.median(t for _, t in points)
    commits = [o.stages["commit"] for o in recent if "commit" in o.stages]
    fixed = min(statistics.median(commits), seconds * 0.99) if commits else 0.0
    return CostModel(fixed, (seconds - fixed) / rows, "commit stage")


def summary(recent: Sequence[Observation]) -> dict[str, Any]:
    """What the batches in `recent` measured: sizes, commit times, rows/s, the destination's busy
    share and the mean seconds of each stage."""
    if not recent:
        return {"batches": 0}
    seconds = [o.seconds for o in recent]
    records = sum(o.records for o in recent)
    span = recent[-1].at - recent[0].at + recent[0].seconds
    stages: dict[str, list[float]] = {}
    for o in recent:
        for name, value in o.stages.items():
            stages.setdefault(name, []).append(value)
    model = cost_model(recent)
    return {
        "batches": len(recent),
        "rows_per_batch": round(records / len(recent)),
        "commit_seconds": {"median": round(statistics.median(seconds), 4), "max": round(max(seconds), 4),
                           "last": round(seconds[-1], 4)},
        "rows_per_second": round(records / span) if span > 0 else None,
        "destination_busy": round(min(1.0, sum(seconds) / span), 3) if span > 0 else None,
        "stage_seconds": {name: round(statistics.fmean(values), 4) for name, values in stages.items()},
        "commit_cost": None if model is None else {
            "fixed_seconds": round(model.fixed, 4), "seconds_per_million_rows": round(model.per_row * 1e6, 3),
            "basis": model.basis},
    }


def suggest(recent: Sequence[Observation], batch: BatchConfig, limit: int, row_bytes: float) -> list[Suggestion]:
    """Suggestions from the batches in `recent` under `batch` (size now: `limit`)."""
    model = cost_model(recent)
    if model is None:
        return []
    facts = summary(recent)
    busy = facts["destination_busy"] or 0.0
    last = recent[-MIN_BATCHES:]
    if all(o.records < 0.5 * o.limit for o in last):
        held = round(statistics.fmean(o.records for o in last))
        return [{"setting": "none", "now": None, "suggested": None,
                 "why": f"the last batches held {held} of {last[-1].limit} rows: cut by max_wait or the source's "
                        "end, so the source delivers all there is; batch size does not matter here"}]
    found: list[Suggestion] = []
    size = None if batch.adaptive else batch_size(model, batch, row_bytes)  # auto steers it itself
    if size is not None:
        rows, why = size
        if _worth_changing(model, limit, rows, busy):
            why += (f"; now {limit} rows: {model.rows_per_second(limit):,.0f} rows/s, "
                    f"{model.seconds(limit):.3f}s each")
            found.append({"setting": "batch.max_rows", "now": limit, "suggested": rows, "why": why})
    elif batch.adaptive and model.fixed >= batch.target_latency * AIM:
        found.append({"setting": "batch.target_latency", "now": batch.target_latency,
                      "suggested": _round(model.fixed / AIM * 10) / 10,
                      "why": f"the fixed cost of a commit alone ({model.fixed:.2f}s) reaches the target"})
    if busy < BUSY:
        found.append(_upstream(facts, busy))
    return found


def _worth_changing(model: CostModel, limit: int, rows: int, busy: float) -> bool:
    """Whether a size of `rows` is worth suggesting over `limit`: one over twice as large as
    needed (latency, memory); one a quarter of the size suggested or less (every stage pays a toll
    per batch, and per chunk); between, only when the destination is the limit or its fixed cost
    is half of each commit."""
    if limit > 2 * rows or 4 * limit <= rows:
        return True
    return 2 * limit < rows and (busy >= BUSY or model.fixed >= 0.5 * model.seconds(limit))


def batch_size(model: CostModel, batch: BatchConfig, row_bytes: float) -> tuple[int, str] | None:
    """The size suggested by `model` and why; None when the fixed cost alone misses the target
    or none was measured."""
    target = batch.target_latency * AIM
    if model.fixed >= target:
        return None
    by_latency = (target - model.fixed) / model.per_row
    by_overhead = model.fixed * (1 - OVERHEAD) / OVERHEAD / model.per_row
    by_floor = batch.target_latency * FLOOR / model.per_row
    by_memory = batch.max_bytes / row_bytes if row_bytes > 0 else float("inf")
    rows = max(batch.min_rows, _round(min(by_latency, max(by_overhead, by_floor), by_memory, batch.max_rows_limit)))

    def sized_by(bound: float) -> bool:  # (no bound by memory where no row had a size: infinite)
        return math.isfinite(bound) and rows == _round(bound)

    if sized_by(by_overhead):
        why = f"the fixed cost of a commit ({model.fixed * 1000:.0f}ms) is {OVERHEAD:.0%} of it at this size"
    elif sized_by(by_floor):
        why = (f"a commit of {FLOOR:.0%} of target_latency amortizes the costs every batch pays outside it "
               "(decoding a chunk, the rules, round trips)")
    elif sized_by(by_latency):
        why = f"larger batches would commit slower than target_latency ({batch.target_latency:g}s)"
    elif sized_by(by_memory):
        why = f"max_bytes holds about this many rows ({row_bytes:.0f} bytes each)"
    elif rows == batch.min_rows:
        why = "min_rows"
    else:
        why = "max_rows_limit"
    return rows, why + f"; commits alone: {model.rows_per_second(rows):,.0f} rows/s, {model.seconds(rows):.2f}s each"


def _upstream(facts: dict[str, Any], busy: float) -> Suggestion:
    """The destination waits for the source or for decoding: what would feed it faster."""
    stages: dict[str, float] = facts["stage_seconds"]
    idle = f"the destination commits only {busy:.0%} of the time"
    poll, work = stages.get("poll", 0.0), stages.get("decode", 0.0) + stages.get("quality", 0.0)
    if poll >= work:
        return {"setting": "source poll size", "now": None, "suggested": "larger",
                 "why": f"{idle}; reading takes longer than decoding ({poll:.3f}s vs {work:.3f}s per batch): "
                        "read more per request (file: read_size, kafka: poll_records, kinesis: records_per_get), "
                        "or spread partitions over more replicas"}
    return {"setting": "replicas", "now": None, "suggested": "more, up to the partitions",
             "why": f"{idle}; decoding and rules take {work:.3f}s per batch against {poll:.3f}s of reading: "
                    "CPU-bound in this process, more replicas (where the source has partitions to share) help"}


def scale_out(partitions: int, replicas: int, tuning: dict[str, Any]) -> Suggestion | None:
    """Replicas against partitions, where both are known (from /status: the partitions a pipeline
    reports and the lease owners it sees)."""
    if partitions <= 0 or replicas <= 0:
        return None
    busy = (tuning.get("measured") or {}).get("destination_busy")
    if replicas > partitions:
        return {"setting": "replicas", "now": replicas, "suggested": partitions,
                "why": f"{partitions} partition(s) for {replicas} replicas: {replicas - partitions} replica(s) idle"}
    if busy is not None and busy < BUSY and replicas < partitions:
        return {"setting": "replicas", "now": replicas, "suggested": partitions,
                "why": f"{partitions} partitions on {replicas} replica(s) and the destination commits only "
                       f"{busy:.0%} of the time: reading is the limit, and up to {partitions} replicas share it"}
    return None


def _round(rows: float) -> int:
    """Two significant digits: a suggestion is not more precise than its measurements."""
    if rows < 100:
        return max(1, round(rows))
    digits = len(str(int(rows))) - 2
    return int(round(rows, -digits))
