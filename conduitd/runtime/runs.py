"""Bounded runs started through the control plane (`--once` semantics on one pipeline), and
their results for an orchestrator to poll."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from conduitd.ops.metrics import PipelineStatus


@dataclass
class RunRecord:
    """One bounded run: `running`, then `succeeded` (exit code 0) or `failed`."""

    pipeline: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "running"
    exit_code: int | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    status: PipelineStatus | None = None

    def as_dict(self) -> dict[str, Any]:
        status = self.status
        return {"id": self.id, "pipeline": self.pipeline, "state": self.state, "exit_code": self.exit_code,
                "error": self.error, "started": _iso(self.started), "ended": _iso(self.ended),
                "rows_read": status.rows_read if status else 0, "rows_written": status.rows_written if status else 0,
                "dlq_rows": status.dlq_rows if status else 0, "batches": status.batches if status else 0,
                "quality": status.quality if status else {}, "schema_changes": status.schema_changes if status else [],
                "positions_before": status.positions_at_start if status else {},
                "positions_after": status.positions if status else {}}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
