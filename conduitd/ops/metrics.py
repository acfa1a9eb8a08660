"""Prometheus metrics and the per-pipeline status behind /status, /metrics and the progress line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from conduitd.core.records import Position
from conduitd.core.redact import redact_value

log = logging.getLogger(__name__)


class Metrics:
    """One registry per process (tests build their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["pipeline"]
        self.rows_read = Counter("conduitd_rows_read", "Records read from the source (rows and rejects).",
                                 labels, registry=self.registry)
        self.rows_written = Counter("conduitd_rows_written", "Rows committed to the destination table.",
                                    labels, registry=self.registry)
        self.dlq_rows = Counter("conduitd_dlq_rows", "Rows written to the DLQ, by rule.",
                                     ["pipeline", "rule"], registry=self.registry)
        self.batches = Counter("conduitd_batches", "Batches committed.", labels, registry=self.registry)
        self.conflicts = Counter("conduitd_checkpoint_conflicts", "Batches refused by the checkpoint "
                                 "compare-and-set (another owner moved the partition).", labels,
                                 registry=self.registry)
        self.quality = Counter("conduitd_quality_violations", "Rows that broke a quality rule, by rule and action.",
                               ["pipeline", "rule", "action"], registry=self.registry)
        self.retries = Counter("conduitd_retries", "Retries after a retriable failure.", labels,
                               registry=self.registry)
        self.commit_seconds = Histogram(
            "conduitd_commit_seconds", "Time to write and commit one batch.", labels, registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_rows = Histogram(
            "conduitd_batch_rows", "Records per committed batch.", labels, registry=self.registry,
            buckets=(1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000, 250000))
        self.ready = Gauge("conduitd_pipeline_ready", "1 when the pipeline can write, 0 while it fails.",
                           labels, registry=self.registry)
        self.last_commit = Gauge("conduitd_last_commit_timestamp_seconds", "Unix time of the last commit.",
                                 labels, registry=self.registry)
        self.source_problem = Gauge("conduitd_source_problem", "1 while the source cannot read (why: 'problem' "
                                    "in /status, e.g. brokers unreachable, no partitions assigned), else 0.",
                                    labels, registry=self.registry)
        self.manifest_errors = Counter("conduitd_manifest_write_errors", "Manifest records that could not be "
                                       "written (see the log for why).", registry=self.registry)
        self.alert_deliveries = Counter("conduitd_alert_deliveries", "Alerts handed to a sink, by outcome: sent, "
                                        "failed (after its retries; the log says why) or dropped (its queue was "
                                        "full).", ["sink", "outcome"], registry=self.registry)
        self.lag = Gauge("conduitd_source_lag", "How far a partition is behind its source's end, by unit: "
                         "records and seconds (Kafka), bytes (files).", ["pipeline", "partition", "unit"],
                         registry=self.registry)


@dataclass
class PipelineStatus:
    """What /status shows for one pipeline; updated by the pipeline task only."""

    name: str
    source: str
    destination: str
    table: str
    state: str = "starting"
    ready: bool = False
    rows_read: int = 0
    rows_written: int = 0
    dlq_rows: int = 0
    rows_deleted: int = 0
    batches: int = 0
    quality: dict[str, dict[str, int]] = field(default_factory=dict)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    last_commit: float | None = None
    last_error: str | None = None
    positions: dict[str, Position] = field(default_factory=dict)
    positions_at_start: dict[str, Position] = field(default_factory=dict)
    dlq_rows_by_rule: dict[str, int] = field(default_factory=dict)
    lag: dict[str, dict[str, float]] = field(default_factory=dict)
    problem: str | None = None
    """Why the source cannot read right now (Source.problem), or None."""
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per partition this replica holds a lease on: owner and epoch (database sources)."""
    started: float = field(default_factory=time.time)
    tuning_report: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    """Makes `tuning` (the pipeline's `BatchSizer.report`), when it is asked for."""
    dbt: dict[str, Any] | None = None
    """`after_commit.dbt`: running or not, runs so far, the last outcome (`conduitd.ops.dbt`); None without it."""

    @property
    def tuning(self) -> dict[str, Any]:
        """The batch sizer's state and suggestions (`conduitd.runtime.tuning`), made when read
        (/status, `conduitd tune`), not after every commit: advice never costs or fails a commit.
        Should making it fail, the error is shown in its place and logged."""
        if self.tuning_report is None:
            return {}
        try:
            return self.tuning_report()
        except Exception as exc:  # advice must not take /status down with it
            log.exception("pipeline %s: the batch-size advice failed", self.name)
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}

    def as_dict(self) -> dict[str, Any]:
        return redact_value({  # /status shows this: no secrets
            "pipeline": self.name, "source": self.source, "destination": self.destination,
            "table": self.table, "state": self.state, "ready": self.ready,
            "rows_read": self.rows_read, "rows_written": self.rows_written,
            "dlq_rows": self.dlq_rows, "dlq_rows_by_rule": self.dlq_rows_by_rule,
            "rows_deleted": self.rows_deleted, "batches": self.batches,
            "quality": self.quality, "schema_changes": self.schema_changes,
            "last_commit": _iso(self.last_commit), "last_error": self.last_error,
            "positions": self.positions, "lag": self.lag, "problem": self.problem, "leases": self.leases,
            "started": _iso(self.started), "tuning": self.tuning, "dbt": self.dbt,
        })


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
