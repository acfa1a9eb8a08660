"""The DLQ of a pipeline (a DLQ table in its destination): list with filters and paging, one
entry, replay a selection (operator), discard a selection (admin).

Replay is `conduitd dlq replay`'s: the entries run through today's rules and schema, and in ONE
transaction leave the DLQ and enter the table (or come back to the DLQ with today's reason), with
the audit row (`conduitd.api.replay`). Discard deletes the entries and writes the audit row (the
entries as they were) in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, Admin, IdempotencyKey, Operator, Viewer, once
from conduitd.api.problems import Problem
from conduitd.api.replay import replay
from conduitd.config import PipelineConfig
from conduitd.destinations import Destination
from conduitd.destinations.base import DlqEntry, DlqFilter, Transaction
from conduitd.destinations.control import AuditEntry, ControlReads, ControlTransaction

router = APIRouter(tags=["dlq"])
MAX_SELECTION = 10_000
MAX_ID = 2 ** 63 - 1  # ids are BIGINT
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


def entry_dict(e: DlqEntry) -> dict[str, Any]:
    return {"id": e.id, "partition": e.partition, "position": e.position, "rule": e.rule, "reason": e.reason,
            "column": e.column, "value": e.value, "payload": e.payload,
            "created_at": e.created_at.isoformat() if isinstance(e.created_at, datetime) else e.created_at}


def _utc(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC (the DLQ's `created_at` is)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _dlq_table(resource: PipelineConfig) -> str:
    if resource.dlq.type != "table":
        raise Problem(409, f"the DLQ of {resource.name!r} is a {resource.dlq.type}, not a table in the destination")
    return resource.dlq_table


def _reads(destination: Destination) -> ControlReads:
    if not isinstance(destination, ControlReads):
        raise Problem(409, "this destination cannot page through its DLQ (a SQL destination can)")
    return destination


@router.get("/pipelines/{name}/dlq", summary="DLQ entries, oldest first, a page at a time")
async def list_dlq(name: str, who: Viewer, access: AccessDep,
                   rule: Annotated[str | None, Query(max_length=500)] = None,
                   since: datetime | None = None, until: datetime | None = None,
                   after_id: Annotated[int | None, Query(ge=0, le=MAX_ID,
                                                         description="the `next` of the previous page")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Entries created in [since, until) (UTC when no zone is given), of one `rule`, with ids above
    `after_id`; `next` is the `after_id` of the following page, null on the last one."""
    resource = access.resource(who, name)
    table = _dlq_table(resource)
    where = DlqFilter(rule=rule, since=_utc(since), until=_utc(until), limit=limit + 1)
    async with access.destination(resource) as destination:
        entries = await _reads(destination).read_dlq_page(table, resource.name, where, after_id=after_id)
    page = entries[:limit]
    more = len(entries) > limit
    return {"entries": [entry_dict(e) for e in page], "next": page[-1].id if more else None}


@router.get("/pipelines/{name}/dlq/{entry_id}", summary="One DLQ entry")
async def show_entry(name: str, entry_id: Annotated[int, Path(ge=0, le=MAX_ID)], who: Viewer,
                     access: AccessDep) -> dict[str, Any]:
    resource = access.resource(who, name)
    table = _dlq_table(resource)
    async with access.destination(resource) as destination:
        found = await _reads(destination).read_dlq_page(table, resource.name, DlqFilter(), ids=[entry_id])
    if not found:
        raise Problem(404, f"no DLQ entry {entry_id} of pipeline {name!r}")
    return entry_dict(found[0])


class Selection(BaseModel):
    """Entries by id, or by a filter (oldest first, at most `limit`)."""

    model_config = ConfigDict(extra="forbid")
    ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_SELECTION)
    rule: str | None = Field(None, max_length=500)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(MAX_SELECTION, ge=1, le=MAX_SELECTION)

    @model_validator(mode="after")
    def _one_way(self) -> Selection:
        if self.ids is not None and (self.rule or self.since or self.until):
            raise ValueError("give `ids` or a filter (rule, since, until), not both")
        since, until = _utc(self.since), _utc(self.until)
        if since is not None and until is not None and since >= until:
            raise ValueError("`since` must be before `until`")
        return self


class Discard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Id] = Field(min_length=1, max_length=1000)


async def _selected(destination: Destination, resource: PipelineConfig, chosen: Selection | Discard
                    ) -> list[DlqEntry]:
    """The entries chosen; a 404 (nothing done) when an id named is not in the DLQ."""
    table = _dlq_table(resource)
    if chosen.ids is not None:
        ids = sorted(set(chosen.ids))
        found = await _reads(destination).read_dlq_page(table, resource.name, DlqFilter(), ids=ids)
        missing = sorted(set(ids) - {int(e.id) for e in found})
        if missing:
            raise Problem(404, f"no DLQ entry {', '.join(map(str, missing[:20]))} of pipeline {resource.name!r}: "
                               "nothing was done", missing=missing[:1000])
        return found
    assert isinstance(chosen, Selection)
    where = DlqFilter(rule=chosen.rule, since=_utc(chosen.since), until=_utc(chosen.until), limit=chosen.limit)
    return await _reads(destination).read_dlq_page(table, resource.name, where)


def _require_audit(access: Access, resource: PipelineConfig) -> None:
    if not access.controls(resource):
        raise Problem(409, f"destination {resource.destination!r} keeps no audit log (a SQL destination does): "
                           f"pipeline {resource.name!r} is operated from the CLI")


@router.post("/pipelines/{name}/dlq/replay",
             summary="Run DLQ entries through today's rules and schema: passing ones move to the table, exactly once")
async def replay_dlq(request: Request, name: str, selection: Selection, who: Operator, access: AccessDep,
                     key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)
    _dlq_table(resource)
    _require_audit(access, resource)

    def audit(ids: list[int | str], moved: int, still: int) -> AuditEntry:
        return AuditEntry(who.name, who.role, resource.project, resource.name, "dlq_replay", {"ids": ids},
                          {"moved": moved, "still_rejected": still}, key)

    async def act() -> tuple[int, Any]:
        async with access.destination(resource, read_only=False) as destination:
            await destination.setup(resource)
            entries = await _selected(destination, resource, selection)
            done = await replay(destination, resource, entries, named_rule=selection.rule is not None, audit=audit)
        return 200, {"replayed": len(done.replayed), "ids": done.replayed, "moved": done.moved,
                     "still_rejected": done.still_rejected, "held": done.held,
                     "audit": "recorded in the replay's transaction" if done.replayed else "nothing was replayed"}

    return await once(request, who, key, selection.model_dump(mode="json"), act, resource)


@router.post("/pipelines/{name}/dlq/discard", summary="Delete DLQ entries (the audit log keeps them)")
async def discard_dlq(request: Request, name: str, chosen: Discard, who: Admin, access: AccessDep,
                      key: IdempotencyKey = None) -> Any:
    resource = access.resource(who, name)
    table = _dlq_table(resource)
    _require_audit(access, resource)

    async def act() -> tuple[int, Any]:
        async with access.destination(resource) as destination:
            entries = await _selected(destination, resource, chosen)
        ids = [int(e.id) for e in entries]

        async def delete(_: Destination, tx: ControlTransaction) -> int:
            gone = await cast(Transaction, tx).delete_rejects(table, ids)  # the SQL transaction is both
            if gone != len(ids):
                raise Problem(409, f"{len(ids) - gone} of the entries left the DLQ meanwhile (replayed or discarded "
                                   "by someone else): nothing was discarded")
            return gone

        await access.audited(who, resource, "dlq_discard", [entry_dict(e) for e in entries],
                             {"discarded": ids}, key, delete)
        return 200, {"discarded": len(ids), "ids": ids, "audit": "recorded in the discard's transaction"}

    return await once(request, who, key, chosen.model_dump(mode="json"), act, resource)
