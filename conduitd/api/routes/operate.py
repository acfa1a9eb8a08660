"""Operating pipelines: pause, resume, restart, and bounded runs for orchestrators."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, IdempotencyKey, Operator, Viewer, once
from conduitd.api.problems import Problem
from conduitd.api.routes.pipelines import summary
from conduitd.api.tokens import Principal
from conduitd.config import PipelineConfig
from conduitd.errors import ConduitError, NotNow

log = logging.getLogger(__name__)
router = APIRouter(tags=["operate"])


async def _state(access: Access, resource: PipelineConfig) -> dict[str, Any]:
    body = await summary(access, resource)
    return {"state": body["state"], "paused": body.get("paused", False)}


async def _audit(access: Access, who: Principal, resource: PipelineConfig, action: str, before: Any, after: Any,
                 key: str | None) -> str:
    """Audit an action on the daemon itself (it changed nothing in the destination): recorded
    after it was made; when the destination cannot take the row now, the log keeps it."""
    try:
        await access.audited(who, resource, action, before, after, key)
        return "recorded"
    except Problem as problem:
        log.error("audit: %s by %s (%s) on pipeline %s, before %s, after %s: not recorded in the destination: %s",
                  action, who.name, who.role, resource.name, before, after, problem.detail)
        return f"not recorded in the destination ({problem.detail}); written to the daemon's log"


async def _operate(request: Request, name: str, who: Principal, access: Access, key: str | None, action: str
                   ) -> Any:
    resource = access.resource(who, name)
    runtime = access.runtime

    async def act() -> tuple[int, Any]:
        before = await _state(access, resource)
        try:
            if action == "pause":
                await runtime.pause(name).wait_paused(access.settings.pause_timeout)
            elif action == "resume":
                runtime.resume(name)
            else:
                runtime.restart(name)
        except NotNow as refused:
            raise Problem(409, str(refused)) from None
        if action != "pause":
            await _settled(access, name)
        after = await _state(access, resource)
        audit = await _audit(access, who, resource, action, before, after, key)
        status = 202 if action == "pause" and after["state"] == "pausing" else 200
        return status, {**(await summary(access, resource)), "audit": audit}

    return await once(request, who, key, {"action": action}, act, resource)


async def _settled(access: Access, name: str) -> None:
    """Wait (briefly) for a restarted pipeline's new run to be in place."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline:
        slot = access.runtime.slot(name)
        if slot is None or not slot.restart.is_set():
            return
        await asyncio.sleep(0.02)


@router.post("/pipelines/{name}/pause", summary="Stop reading; what is queued is committed (202 while it is)")
async def pause(request: Request, name: str, who: Operator, access: AccessDep, key: IdempotencyKey = None) -> Any:
    return await _operate(request, name, who, access, key, "pause")


@router.post("/pipelines/{name}/resume", summary="Read on (from the checkpoints, if they were changed meanwhile)")
async def resume(request: Request, name: str, who: Operator, access: AccessDep, key: IdempotencyKey = None) -> Any:
    return await _operate(request, name, who, access, key, "resume")


@router.post("/pipelines/{name}/restart", summary="Start a failed or paused pipeline again from its checkpoints")
async def restart(request: Request, name: str, who: Operator, access: AccessDep, key: IdempotencyKey = None) -> Any:
    return await _operate(request, name, who, access, key, "restart")


@router.post("/pipelines/{name}/runs", status_code=202,
             summary="Start a bounded run (--once semantics) of an idle, paused or failed pipeline")
async def start_run(request: Request, name: str, who: Operator, access: AccessDep,
                    key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)

    async def act() -> tuple[int, Any]:
        try:
            record = access.runtime.start_run(resource)
        except NotNow as refused:
            raise Problem(409, str(refused)) from None
        except ConduitError as exc:
            raise Problem(409, f"the run cannot start: {exc}") from None
        audit = await _audit(access, who, resource, "run", None, {"run": record.id}, key)
        return 202, {**record.as_dict(), "audit": audit}

    return await once(request, who, key, {"action": "run"}, act, resource)


@router.get("/runs/{run_id}", summary="A bounded run's state and result")
async def get_run(run_id: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    record = access.runtime.runs.get(run_id)
    if record is None:
        raise Problem(404, f"no run {run_id!r}")
    try:
        access.resource(who, record.pipeline)
    except Problem:  # the same answer as for no run: another project's pipeline is not named
        raise Problem(404, f"no run {run_id!r}") from None
    return record.as_dict()


@router.get("/pipelines/{name}/runs", summary="The pipeline's bounded runs since the daemon started")
async def list_runs(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    access.resource(who, name)
    runs = [r.as_dict() for r in access.runtime.runs.values() if r.pipeline == name]
    return {"runs": runs[::-1]}
