"""Schema drift of `schema_evolution: manual`: the pending DDL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduitd.api.deps import AccessDep, Viewer
from conduitd.destinations.control import ControlReads

router = APIRouter(tags=["schema"])


@router.get("/pipelines/{name}/schema/pending", summary="Schema changes recorded but not applied (manual mode)")
async def pending(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    async with access.destination(resource) as destination:
        if not isinstance(destination, ControlReads):
            return {"pending": [], "note": f"destination {resource.destination!r} keeps no schema history"}
        changes = await destination.pending_changes(resource.name)
    return {"pending": [{"id": c.id, "recorded_at": c.recorded_at.isoformat() if c.recorded_at else None,
                         "table": c.table, "change": c.change, "column": c.column, "old": c.old, "new": c.new,
                         "ddl": c.ddl} for c in changes]}
