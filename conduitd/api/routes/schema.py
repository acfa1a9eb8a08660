"""Schema drift of `schema_evolution: manual`: the pending DDL, applied or rejected by an admin.

Every batch that meets a change records it again in `conduitd_schema_history`, so one change may
be pending under several ids: a decision on one is taken on every pending change of the pipeline
with the same table and DDL (the answer lists them).

Apply: where the destination's DDL is transactional (`Capabilities.transactional_ddl`: PostgreSQL,
SQLite) the DDL, the decisions and the audit row commit in ONE transaction. Where it is not
(MySQL/MariaDB commit each DDL statement at once) the DDL runs first, on its own, and the
decisions and the audit row commit after it. If that second step fails (or another admin decided
meanwhile: 409), the DDL stays applied while the change is still shown pending; applying it again
fails on the DDL (409), and rejecting it records the decision. Reject records the decision (and
the audit row) only. The pipeline's next batch
sees the table as it is then: after an apply, rows with the new column are written whole; the
rows held in the DLQ (rule `schema`) meanwhile are moved by a DLQ replay.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, Admin, IdempotencyKey, Viewer, once
from conduitd.api.problems import Problem
from conduitd.api.tokens import Principal
from conduitd.config import PipelineConfig
from conduitd.destinations import Destination
from conduitd.destinations.control import ControlReads, ControlTransaction, PendingChange

router = APIRouter(tags=["schema"])
ChangeId = Annotated[int, Path(ge=1, le=2 ** 63 - 1, description="the id the pending list gives")]
_ACTIONS = {"applied": "schema_apply", "rejected": "schema_reject"}


def change_dict(c: PendingChange) -> dict[str, Any]:
    return {"id": c.id, "recorded_at": c.recorded_at.isoformat() if c.recorded_at else None, "table": c.table,
            "change": c.change, "column": c.column, "old": c.old, "new": c.new, "ddl": c.ddl}


@router.get("/pipelines/{name}/schema/pending", summary="Schema changes recorded but not applied (manual mode)")
async def pending(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    async with access.destination(resource) as destination:
        if not isinstance(destination, ControlReads):
            return {"pending": [], "note": f"destination {resource.destination!r} keeps no schema history"}
        changes = await destination.pending_changes(resource.name)
    return {"pending": [change_dict(c) for c in changes]}


def _reads(destination: Destination) -> ControlReads:
    if not isinstance(destination, ControlReads):
        raise Problem(409, "this destination keeps no schema history (a SQL destination does)")
    return destination


async def _pending(reads: ControlReads, resource: PipelineConfig, change_id: int) -> PendingChange:
    """The pending change, or 404 (no such change of the pipeline) / 409 (decided already)."""
    found = next((c for c in await reads.pending_changes(resource.name) if c.id == change_id), None)
    if found is not None:
        return found
    known, decision = await reads.decision(resource.name, change_id)
    if not known:
        raise Problem(404, f"no schema change {change_id} of pipeline {resource.name!r}")
    if decision is not None:
        raise Problem(409, f"schema change {change_id} was {decision} already")
    raise Problem(409, f"schema change {change_id} is not pending (it was applied by the pipeline)")


async def _decide(access: Access, who: Principal, resource: PipelineConfig, change_id: int, decision: str,
                  key: str | None) -> dict[str, Any]:
    async with access.destination(resource) as destination:
        change = await _pending(_reads(destination), resource, change_id)
    if decision == "applied" and not _transactional_ddl(access, resource):
        async with access.destination(resource, read_only=False) as destination, destination.transaction() as tx:
            await tx.run_ddl(change.ddl)  # committed at once by the database anyway

    async def record(destination: Destination, tx: ControlTransaction) -> list[int]:
        ids = await _reads(destination).same_changes(resource.name, change_id)  # in this transaction
        if not ids:
            raise Problem(409, f"schema change {change_id} was decided meanwhile")
        for history_id in ids:
            if not await tx.decide_change(history_id, decision, who.name):
                raise Problem(409, f"schema change {history_id} was decided meanwhile")
        if decision == "applied" and _transactional_ddl(access, resource):
            await tx.run_ddl(change.ddl)
        return ids

    ids = await access.audited(who, resource, _ACTIONS[decision], change_dict(change),
                               lambda decided: {"decision": decision, "ids": decided}, key, record)
    access.forget_pending(resource.name)
    return {"decision": decision, "ids": ids, "change": change_dict(change), "audit": "recorded"}


def _transactional_ddl(access: Access, resource: PipelineConfig) -> bool:
    from conduitd.destinations import make_destination

    return bool(make_destination(access.config.destination(resource.destination)).capabilities.transactional_ddl)


@router.post("/pipelines/{name}/schema/pending/{change_id}/apply",
             summary="Run a pending change's DDL and record the decision (admin)")
async def apply(request: Request, name: str, change_id: ChangeId, who: Admin, access: AccessDep,
                key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)

    async def act() -> tuple[int, Any]:
        return 200, await _decide(access, who, resource, change_id, "applied", key)

    return await once(request, who, key, {"change": change_id, "decision": "applied"}, act, resource)


@router.post("/pipelines/{name}/schema/pending/{change_id}/reject",
             summary="Record that a pending change is not to be applied (admin)")
async def reject(request: Request, name: str, change_id: ChangeId, who: Admin, access: AccessDep,
                 key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)

    async def act() -> tuple[int, Any]:
        return 200, await _decide(access, who, resource, change_id, "rejected", key)

    return await once(request, who, key, {"change": change_id, "decision": "rejected"}, act, resource)
