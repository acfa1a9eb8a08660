"""Checkpoints of a pipeline: show; reset one partition (admin), only while nothing reads it.

A reset moves a partition's committed position to an offset, a time, a sequence number, a
watermark or a raw position (`conduitd.api.positions`). It is refused (409) unless the pipeline is
idle in this daemon (`Runtime.idle`: paused with everything committed, failed, or not run here):
a reader would otherwise commit over it. The change is a compare-and-set from the position read
when the request came, made in one transaction with its audit row (before and after); a position
that moved meanwhile (another replica committed) is a 409 and nothing changes. Resuming the
pipeline then starts it again from its checkpoints (`Runtime.moved`). `dry_run` answers what the
reset would re-read or skip and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from conduitd.api.deps import AccessDep, Admin, IdempotencyKey, Viewer, once
from conduitd.api.positions import target
from conduitd.api.problems import Problem
from conduitd.api.reset_target import Ask
from conduitd.destinations import Destination
from conduitd.destinations.base import Transaction
from conduitd.destinations.control import ControlTransaction

router = APIRouter(tags=["checkpoints"])


@router.get("/pipelines/{name}/checkpoints", summary="The committed position of every partition")
async def show(name: str, who: Viewer, access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    async with access.destination(resource) as destination:
        rows = await destination.list_checkpoints(resource.name)
    return {"checkpoints": [{"partition": r.partition, "position": r.position,
                             "updated_at": r.updated_at.isoformat() if r.updated_at else None} for r in rows]}


class Reset(BaseModel):
    """One partition, and exactly one of offset, timestamp, sequence, watermark, position."""

    model_config = ConfigDict(extra="forbid")
    partition: str = Field(min_length=1, max_length=2000)
    offset: Annotated[int, Field(ge=0, le=2 ** 63 - 1)] | None = None
    """Kafka: the next offset to read; a file: the byte to read from (Parquet: the row)."""
    timestamp: datetime | None = None
    """Kafka: the first record at or after this time."""
    sequence: str | None = Field(None, max_length=200)
    """Kinesis: the last sequence number taken as read."""
    watermark: str | None = Field(None, max_length=2000)
    """Database tables: the cursor value read up to."""
    position: dict[str, Any] | None = None
    """Any source: the position as the source stores it."""
    dry_run: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> Reset:
        given = [n for n in ("offset", "timestamp", "sequence", "watermark", "position")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of offset, timestamp, sequence, watermark, position")
        return self


@router.post("/pipelines/{name}/checkpoints/reset",
             summary="Move one partition's checkpoint while the pipeline is paused (admin); dry_run shows the effect")
async def reset(request: Request, name: str, body: Reset, who: Admin, access: AccessDep,
                key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)
    source = access.config.source(resource.source)
    ask = Ask(body.offset, body.timestamp, body.sequence, body.watermark, body.position)

    async def act() -> tuple[int, Any]:
        if not access.runtime.idle(name):
            raise Problem(409, f"pipeline {name!r} is reading: pause it first (POST /api/v1/pipelines/{name}/pause) "
                               "and wait until it is paused")
        async with access.destination(resource) as destination:
            current = (await destination.load_checkpoints(resource.name)).get(body.partition)
        moved = await target(source, body.partition, current, ask)
        answer = {"partition": body.partition, "current": current, "new": moved.position, **moved.as_dict(),
                  "dry_run": body.dry_run}
        del answer["position"]
        if body.dry_run:
            return 200, answer

        async def change(_: Destination, tx: ControlTransaction) -> None:
            # The SQL transactions are both a Transaction and a ControlTransaction.
            if not await cast(Transaction, tx).compare_and_set(resource.name, body.partition, current,
                                                               moved.position):
                raise Problem(409, f"the checkpoint of {body.partition!r} changed meanwhile: nothing was reset; "
                                   "look at it again")

        if not access.runtime.idle(name):  # resumed while the target was looked up
            raise Problem(409, f"pipeline {name!r} was resumed meanwhile: nothing was reset")
        await access.audited(who, resource, "checkpoint_reset", {"partition": body.partition, "position": current},
                             {"partition": body.partition, "position": moved.position}, key, change)
        access.runtime.moved(name)
        return 200, {**answer, "audit": "recorded in the reset's transaction"}

    return await once(request, who, key, body.model_dump(mode="json"), act, resource)
