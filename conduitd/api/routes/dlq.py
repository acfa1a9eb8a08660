"""The DLQ of a pipeline: list with filters and paging, one entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduitd.api.deps import AccessDep, Viewer
from conduitd.api.problems import Problem
from conduitd.destinations.base import DlqEntry, DlqFilter

router = APIRouter(tags=["dlq"])


def entry_dict(e: DlqEntry) -> dict[str, Any]:
    return {"id": e.id, "partition": e.partition, "position": e.position, "rule": e.rule, "reason": e.reason,
            "column": e.column, "value": e.value, "payload": e.payload,
            "created_at": e.created_at.isoformat() if isinstance(e.created_at, datetime) else e.created_at}


@router.get("/pipelines/{name}/dlq", summary="DLQ entries, oldest first")
async def list_dlq(name: str, who: Viewer, access: AccessDep,
                   rule: Annotated[str | None, Query(max_length=500)] = None,
                   since: datetime | None = None, until: datetime | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    resource = access.resource(who, name)
    if resource.dlq.type != "table":
        raise Problem(409, f"the DLQ of {name!r} is a {resource.dlq.type}, not a table in the destination")
    async with access.destination(resource) as destination:
        if await destination.table_columns(resource.dlq_table) is None:
            return {"entries": []}
        entries = await destination.read_dlq(resource, DlqFilter(rule=rule, since=since, until=until, limit=limit))
    return {"entries": [entry_dict(e) for e in entries]}
