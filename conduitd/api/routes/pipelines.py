"""Reading pipelines: the list, one pipeline, its partitions, batch timeline, manifest records and
effective config, and the server-sent event stream of state changes and commits."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, Viewer
from conduitd.api.problems import Problem
from conduitd.config import PipelineConfig
from conduitd.core.redact import redact_value
from conduitd.errors import ConfigError
from conduitd.ops.manifest_entries import read_entries

router = APIRouter(tags=["pipelines"])


async def summary(access: Access, resource: PipelineConfig) -> dict[str, Any]:
    """What the pipelines list shows of one pipeline."""
    slot = access.runtime.slot(resource.name)
    base: dict[str, Any] = {
        "name": resource.name, "project": resource.project, "source": resource.source,
        "destination": resource.destination, "table": resource.table_name, "mode": resource.mode,
        "source_type": access.config.source(resource.source).type,
        "destination_type": access.config.destination(resource.destination).type}
    if slot is None:
        return {**base, "state": "idle", "ready": False, "paused": False, "rows_per_second": {"1m": 0.0, "15m": 0.0},
                "note": "not run by this daemon (not selected); a bounded run can be started"}
    pipeline = slot.pipeline
    pipeline.refresh_lag()
    status = pipeline.status.as_dict()
    pending = await access.pending_count(resource)
    return {**base, **{k: status[k] for k in ("state", "ready", "rows_read", "rows_written", "dlq_rows",
                                              "rows_deleted", "batches", "last_commit", "last_error", "lag",
                                              "problem", "leases", "started", "tuning")},
            "paused": pipeline.paused,
            "rows_per_second": {"1m": pipeline.activity.rows_per_second(60),
                                "15m": pipeline.activity.rows_per_second(900)},
            "pending_schema_changes": pending,
            "lease_owners": sorted({v.get("owner") for v in pipeline.status.leases.values() if v.get("owner")})}


@router.get("/whoami", summary="The caller: token name, role and projects")
async def whoami(who: Viewer) -> dict[str, Any]:
    return {"name": who.name, "role": who.role, "projects": sorted(who.projects)}


@router.get("/pipelines", summary="Every pipeline the caller's projects hold")
async def list_pipelines(who: Viewer, access: AccessDep, series: bool = False) -> dict[str, Any]:
    """`series=true` adds each pipeline's 15-minute throughput series (for sparklines)."""
    found = []
    for resource in access.visible(who):
        body = await summary(access, resource)
        slot = access.runtime.slot(resource.name)
        if series:
            body["throughput"] = slot.pipeline.activity.series(900) if slot else []
        found.append(body)
    return {"pipelines": found}


@router.get("/pipelines/{name}", summary="One pipeline")
async def get_pipeline(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    body = await summary(access, resource)
    slot = access.runtime.slot(name)
    if slot is not None:
        status = slot.pipeline.status
        body.update(quality=status.quality, dlq_rows_by_rule=status.dlq_rows_by_rule,
                    schema_changes=status.schema_changes[-50:],
                    throughput=slot.pipeline.activity.series(900),
                    lag_series=slot.pipeline.activity.lag_series())
    return body


@router.get("/pipelines/{name}/partitions", summary="Partitions: committed position, owner, epoch, lag")
async def partitions(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    async with access.destination(resource) as destination:
        rows = await destination.list_checkpoints(resource.name)
    slot = access.runtime.slot(name)
    leases = slot.pipeline.status.leases if slot else {}
    lag = slot.pipeline.status.lag if slot else {}
    found = {r.partition: r for r in rows}
    names = sorted(set(found) | set(leases) | set(lag))
    updated = {r.partition: r.updated_at.isoformat() for r in rows if r.updated_at is not None}
    return {"partitions": [{
        "partition": p, "checkpoint": found[p].position if p in found else None, "updated_at": updated.get(p),
        "owner": leases.get(p, {}).get("owner"), "epoch": leases.get(p, {}).get("epoch"),
        "lag": lag.get(p, {})} for p in names]}


@router.get("/pipelines/{name}/timeline", summary="The last batches: rows, seconds per stage, outcome, error class")
async def timeline(name: str, who: Viewer, access: AccessDep,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    access.resource(who, name)
    slot = access.runtime.slot(name)
    entries = list(slot.pipeline.activity.timeline)[-limit:] if slot else []
    return {"batches": [e.as_dict() for e in reversed(entries)]}


@router.get("/pipelines/{name}/manifest", summary="The pipeline's records in the run manifest")
async def manifest(name: str, who: Viewer, access: AccessDep,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    access.resource(who, name)
    path = access.config.service.manifest_path
    if path is None:
        return {"records": [], "note": "service.manifest_path is not set"}
    try:
        text = await asyncio.to_thread(_read_text, path)
    except OSError as exc:
        raise Problem(503, f"the manifest cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        found = read_entries(text)
    except ConfigError as exc:
        raise Problem(409, f"the manifest {path} cannot be read: {exc}") from None
    entries = [dataclasses.asdict(e) for e in found if e.pipeline == name]
    return {"records": redact_value(entries[-limit:][::-1])}


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


@router.get("/pipelines/{name}/config", summary="The effective config of the pipeline, secrets redacted")
async def effective_config(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    config = access.config
    body = {"resource": resource.model_dump(mode="json", by_alias=True),
            "source": config.source(resource.source).model_dump(mode="json", by_alias=True),
            "destination": config.destination(resource.destination).model_dump(mode="json", by_alias=True)}
    if resource.batch.adaptive:  # the model keeps max_rows_limit there; the config said `auto`
        body["resource"]["batch"]["max_rows"] = "auto"
    return redact_value(_mask_secrets(body))


_SECRET_KEYS = ("password", "secret", "token", "dsn", "connection_string", "credential", "private_key",
                "aws_secret_access_key", "session_token")


def _mask_secrets(value: Any, key: str = "") -> Any:
    """Secret fields are masked already (SecretStr); keys that name a secret are masked too, in
    case a connector keeps one as plain text (librdkafka's client properties)."""
    if isinstance(value, dict):
        return {k: _mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_secrets(v, key) for v in value]
    if isinstance(value, str) and value and any(s in key.lower() for s in _SECRET_KEYS):
        return "**********"
    return value


@router.get("/events", summary="Server-sent events: state changes, commits and runs of visible pipelines",
            response_class=StreamingResponse)
async def events(request: Request, who: Viewer, access: AccessDep,
                 pipeline: Annotated[str | None, Query(max_length=200)] = None) -> StreamingResponse:
    visible = {r.name for r in access.visible(who)}
    if pipeline is not None and pipeline not in visible:
        raise Problem(404, f"no pipeline {pipeline!r}")
    wanted = {pipeline} if pipeline else visible

    async def stream() -> AsyncIterator[bytes]:
        yield b": conduitd events\n\n"
        stopping = access.runtime.stop
        quiet = 0
        with access.runtime.events.subscription() as queue:
            while not stopping.is_set():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=1)
                except TimeoutError:
                    quiet += 1
                    if quiet % 15 == 0:
                        yield b": keep-alive\n\n"
                    continue
                if event["pipeline"] in wanted:
                    data = orjson.dumps(redact_value(event), default=str)
                    yield b"id: %d\nevent: %s\ndata: %s\n\n" % (event["id"], event["kind"].encode(), data)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
