"""Checkpoints of a pipeline: show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduitd.api.deps import AccessDep, Viewer

router = APIRouter(tags=["checkpoints"])


@router.get("/pipelines/{name}/checkpoints", summary="The committed position of every partition")
async def show(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    async with access.destination(resource) as destination:
        rows = await destination.list_checkpoints(resource.name)
    return {"checkpoints": [{"partition": r.partition, "position": r.position,
                             "updated_at": r.updated_at.isoformat() if r.updated_at else None} for r in rows]}
