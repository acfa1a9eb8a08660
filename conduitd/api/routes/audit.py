"""The audit log: every mutation made through the API, merged from the `conduitd_audit` tables of
the destinations of the caller's pipelines (each destination opened once), newest first.

Entry ids are numbered per destination, so a page's `next_before_id` is a cursor with one position
per destination (`db:17,wh:0`; `0`: nothing older there); a plain integer applies to every
destination (enough when there is one). Each destination's own order (by id) is kept; the
destinations are interleaved by time.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, Viewer
from conduitd.api.problems import Problem
from conduitd.config import PipelineConfig
from conduitd.core.redact import redact_value
from conduitd.destinations.control import AuditEntry, ControlReads

router = APIRouter(tags=["audit"])

CHUNK = 500
"""Entries read per query while a pipeline/action filter looks for matches."""
SCAN_LIMIT = 20_000
"""Entries one request reads from one destination at most; the page ends where the scan stopped
(and its cursor goes on from there)."""
_CURSOR = re.compile(r"^(?:\d{1,18}|[A-Za-z0-9_.\-]+:\d{1,18}(?:,[A-Za-z0-9_.\-]+:\d{1,18})*)$")
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Scan:
    """What one destination gave for a page."""

    destination: str
    found: list[AuditEntry] = field(default_factory=list)
    stopped_at: int | None = None
    """The last id read (its entries older than this are not read yet)."""
    exhausted: bool = False


@router.get("/audit", summary="Audit log of the caller's projects, newest first; paged by before_id")
async def audit(who: Viewer, access: AccessDep,
                pipeline: Annotated[str | None, Query(max_length=200, description="Only this pipeline")] = None,
                action: Annotated[str | None, Query(max_length=100, description="Only this action "
                                                                                "(pause, resume, ...)")] = None,
                before_id: Annotated[str | None, Query(max_length=2000, description="The `next_before_id` of "
                                                                                    "the page before")] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    resources = [access.resource(who, pipeline)] if pipeline is not None else access.visible(who)
    destinations: dict[str, PipelineConfig] = {}
    for resource in resources:
        if access.controls(resource):
            destinations.setdefault(resource.destination, resource)
    cursor = _parse(before_id, list(destinations))
    projects = None if who.all_projects else sorted(who.projects)

    def wanted(entry: AuditEntry) -> bool:
        return ((pipeline is None or entry.pipeline == pipeline) and (action is None or entry.action == action)
                and who.sees(entry.project))

    scans: list[_Scan] = []
    unavailable: list[dict[str, str]] = []
    for name, resource in destinations.items():
        if cursor.get(name) == 0:
            continue  # nothing older there
        try:
            scans.append(await _scan(access, resource, projects, cursor.get(name), wanted, limit))
        except Problem as problem:
            unavailable.append({"destination": name, "detail": problem.detail})
    page = list(_merge(scans, limit))
    return {"entries": [_entry(name, e) for name, e in page],
            "next_before_id": _next(scans, page, cursor, list(destinations)),
            "unavailable": unavailable,
            "not_kept": [r.name for r in resources if not access.controls(r)]}


async def _scan(access: Access, resource: PipelineConfig, projects: list[str] | None, before: int | None,
                wanted: Callable[[AuditEntry], bool], limit: int) -> _Scan:
    """Up to `limit` wanted entries of the destination older than `before`, newest first."""
    scan = _Scan(resource.destination, stopped_at=before)
    read = 0
    async with access.destination(resource) as destination:
        if not isinstance(destination, ControlReads):
            scan.exhausted = True
            return scan
        while read < SCAN_LIMIT:
            chunk = await destination.read_audit(projects, CHUNK, scan.stopped_at)
            read += len(chunk)
            for entry in chunk:
                scan.stopped_at = entry.id
                if wanted(entry):
                    scan.found.append(entry)
                    if len(scan.found) == limit:
                        return scan
            if len(chunk) < CHUNK:
                scan.exhausted = True
                return scan
    return scan


def _merge(scans: list[_Scan], limit: int) -> Iterator[tuple[str, AuditEntry]]:
    """The newest `limit` entries: each destination's own order kept, interleaved by time."""
    streams = [[(s.destination, e) for e in s.found] for s in scans]
    merged = heapq.merge(*streams, key=lambda pair: (pair[1].at or _EPOCH, pair[0]), reverse=True)
    for count, pair in enumerate(merged):
        if count == limit:
            return
        yield pair


def _next(scans: list[_Scan], page: list[tuple[str, AuditEntry]], cursor: dict[str, int | None],
          names: list[str]) -> str | None:
    """The cursor that goes on after `page`; None when nothing older is left anywhere."""
    after = dict(cursor)
    more = False
    for scan in scans:
        shown = [e for name, e in page if name == scan.destination]
        if len(shown) < len(scan.found):  # the merge left some out: go on after the last shown
            after[scan.destination] = shown[-1].id if shown else cursor.get(scan.destination)
            more = True
        elif scan.exhausted:
            after[scan.destination] = 0
        else:
            after[scan.destination] = scan.stopped_at
            more = True
    if not more:
        return None
    return ",".join(f"{n}:{after[n]}" for n in names if after.get(n) is not None)


def _parse(before_id: str | None, names: list[str]) -> dict[str, int | None]:
    if before_id is None:
        return {}
    if not _CURSOR.match(before_id):
        raise Problem(422, "before_id is an entry id or the `next_before_id` of the page before "
                           "(destination:id, comma-separated)")
    if ":" not in before_id:
        return dict.fromkeys(names, int(before_id))
    parsed: dict[str, int | None] = {}
    for part in before_id.split(","):
        name, _, position = part.partition(":")
        parsed[name] = int(position)
    return parsed


def _entry(destination: str, e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "destination": destination, "at": e.at.isoformat() if e.at else None, "actor": e.actor,
            "role": e.role, "project": e.project, "pipeline": e.pipeline, "action": e.action,
            "before": redact_value(e.before), "after": redact_value(e.after), "idempotency_key": e.idempotency_key}
