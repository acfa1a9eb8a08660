"""Usage analytics (rows, bytes, DLQ rows, batches per pipeline and project per hour) and the
audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from conduitd.api.deps import AccessDep, Viewer
from conduitd.destinations.control import ControlReads

router = APIRouter(tags=["usage"])


@router.get("/usage", summary="Usage per pipeline and hour, from each destination's conduitd_usage")
async def usage(who: Viewer, access: AccessDep, since: datetime | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    by_destination: dict[str, list[str]] = {}
    for resource in access.visible(who):
        if access.controls(resource):
            by_destination.setdefault(resource.destination, []).append(resource.name)
    for resource_name in by_destination:
        names = by_destination[resource_name]
        first = access.resource(who, names[0])
        async with access.destination(first) as destination:
            assert isinstance(destination, ControlReads)
            for row in await destination.read_usage(names, since):
                rows.append({"pipeline": row.pipeline, "project": row.project, "hour": row.hour.isoformat(),
                             "rows": row.rows, "bytes": row.bytes, "dlq_rows": row.dlq_rows, "batches": row.batches})
    rows.sort(key=lambda r: (r["hour"], r["pipeline"]))
    return {"usage": rows}
