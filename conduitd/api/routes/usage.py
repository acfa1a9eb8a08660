"""Usage analytics: rows, bytes, DLQ rows and batches per pipeline (or project) and hour, read from
each destination's `conduitd_usage` (added to by the transaction that commits each batch, so
rolled-back work is never counted), as JSON with totals or as CSV (RFC 4180).

Pipelines whose destination keeps no usage are listed under `not_kept` with, when this daemon
runs them, its own counters since their start (not per hour, no bytes): nothing is estimated.
A destination that cannot be reached is listed under `unavailable`; the others still answer.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from conduitd.api.access import Access
from conduitd.api.deps import AccessDep, Viewer
from conduitd.api.problems import Problem
from conduitd.api.tokens import Principal
from conduitd.config import PipelineConfig
from conduitd.destinations.control import ControlReads, UsageRow

router = APIRouter(tags=["usage"])

MEASURES = ("rows", "bytes", "dlq_rows", "batches")
CSV_MEDIA_TYPE = "text/csv"
INCOMPLETE_HEADER = "Conduitd-Usage-Incomplete"

_CSV_DOC = {"description": "One line per hour and pipeline (or project) after a header row, RFC 4180 "
                          f"quoting; measures {', '.join(MEASURES)}. The header {INCOMPLETE_HEADER} names "
                          "pipelines whose usage is missing (destination keeps none, or unreachable).",
            "schema": {"type": "string"}}


@router.get("/usage", summary="Usage per pipeline or project and hour, with totals; CSV on request",
            response_model=None,
            responses={200: {"content": {CSV_MEDIA_TYPE: _CSV_DOC},
                             "description": "JSON (default) or CSV (`format=csv` or `Accept: text/csv`)"}})
async def usage(request: Request, who: Viewer, access: AccessDep,
                since: Annotated[datetime | None, Query(description="Hours that end after this instant "
                                                                    "(naive: UTC)")] = None,
                until: Annotated[datetime | None, Query(description="Hours that start before this instant "
                                                                    "(naive: UTC)")] = None,
                group: Annotated[Literal["pipeline", "project"], Query(description="One line per pipeline "
                                                                                   "and hour, or per project "
                                                                                   "and hour")] = "pipeline",
                pipeline: Annotated[str | None, Query(max_length=200, description="Only this pipeline")] = None,
                format: Annotated[Literal["json", "csv"] | None,
                                  Query(description="Overrides the Accept header")] = None) -> Response:
    since, until = _maybe_utc(since), _maybe_utc(until)
    if since is not None and until is not None and since >= until:
        raise Problem(422, "`since` must be before `until`")
    resources = [access.resource(who, pipeline)] if pipeline is not None else access.visible(who)
    found, not_kept, unavailable = await _collect(access, who, resources, since, until)
    lines = _group(found, group)
    incomplete = [n["pipeline"] for n in not_kept] + [p for u in unavailable for p in u["pipelines"]]
    headers = {INCOMPLETE_HEADER: ", ".join(incomplete)} if incomplete else {}
    if _wants_csv(format, request.headers.get("accept", "")):
        return Response(_csv(lines, group), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8; header=present",
                        headers={**headers, "Content-Disposition": 'attachment; filename="conduitd-usage.csv"'})
    return JSONResponse({
        "group": group, "since": _iso(since), "until": _iso(until), "usage": lines,
        "totals": {"all": _sum(lines), "groups": _totals(lines, group)},
        "not_kept": not_kept, "unavailable": unavailable}, headers=headers)


async def _collect(access: Access, who: Principal, resources: list[PipelineConfig], since: datetime | None,
                   until: datetime | None) -> tuple[list[UsageRow], list[dict[str, Any]], list[dict[str, Any]]]:
    """The usage rows of `resources` (each destination read once), the pipelines whose
    destination keeps no usage, and the destinations that could not be read."""
    by_destination: dict[str, list[PipelineConfig]] = {}
    not_kept: list[dict[str, Any]] = []
    for resource in resources:
        if access.controls(resource):
            by_destination.setdefault(resource.destination, []).append(resource)
        else:
            not_kept.append(_fallback(access, resource))
    found: list[UsageRow] = []
    unavailable: list[dict[str, Any]] = []
    for destination_name, members in by_destination.items():
        names = [r.name for r in members]
        try:
            async with access.destination(members[0]) as destination:
                if not isinstance(destination, ControlReads):
                    not_kept += [_fallback(access, r) for r in members]
                    continue
                read = await destination.read_usage(names, since)
        except Problem as problem:
            unavailable.append({"destination": destination_name, "pipelines": names, "detail": problem.detail})
            continue
        # The recorded project is the fence too: usage of a pipeline that moved in from a project
        # the caller cannot see stays hidden.
        found += [r for r in read if who.sees(r.project) and (until is None or _utc(r.hour) < until)]
    return found, not_kept, unavailable


def _fallback(access: Access, resource: PipelineConfig) -> dict[str, Any]:
    """What is known of a pipeline whose destination keeps no usage: the daemon's own counters
    since the pipeline started here (they die with the daemon), or nothing."""
    destination = access.config.destination(resource.destination)
    body: dict[str, Any] = {
        "pipeline": resource.name, "project": resource.project, "destination": resource.destination,
        "destination_type": destination.type,
        "reason": f"destination {resource.destination!r} ({destination.type}) keeps no usage table; usage is kept "
                  "by SQL destinations (PostgreSQL, MySQL/MariaDB, SQLite)"}
    slot = access.runtime.slot(resource.name)
    if slot is None:
        return {**body, "daemon_counters": None, "note": "not run by this daemon: no figures"}
    status = slot.pipeline.status
    counters = {"since": datetime.fromtimestamp(status.started, UTC).isoformat(), "rows": status.rows_written,
                "bytes": None, "dlq_rows": status.dlq_rows, "batches": status.batches}
    return {**body, "daemon_counters": counters,
            "note": "counted by this daemon since the pipeline started here, not per hour; since/until do not "
                    "apply and bytes are not counted"}


def _group(rows: Iterable[UsageRow], group: str) -> list[dict[str, Any]]:
    """One line per (pipeline, hour) or (project, hour), ordered by hour then name."""
    sums: dict[tuple[datetime, str, str], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for row in rows:
        key = (_utc(row.hour), row.pipeline if group == "pipeline" else "", row.project)
        for i, measure in enumerate(MEASURES):
            sums[key][i] += int(getattr(row, measure))
    lines = []
    for (hour, name, project), values in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        line: dict[str, Any] = {"hour": hour.isoformat()}
        line.update({"pipeline": name, "project": project} if group == "pipeline" else {"project": project})
        line.update(zip(MEASURES, values, strict=True))
        lines.append(line)
    return lines


def _sum(lines: Iterable[dict[str, Any]]) -> dict[str, int]:
    total = dict.fromkeys(MEASURES, 0)
    for line in lines:
        for measure in MEASURES:
            total[measure] += line[measure]
    return total


def _totals(lines: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Per pipeline (or project) over the whole range."""
    keys = ("pipeline", "project") if group == "pipeline" else ("project",)
    members: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        members[tuple(line[k] for k in keys)].append(line)
    return [{**dict(zip(keys, key, strict=True)), **_sum(group_lines)}
            for key, group_lines in sorted(members.items())]


def _csv(lines: list[dict[str, Any]], group: str) -> str:
    columns = ["hour", *(("pipeline", "project") if group == "pipeline" else ("project",)), *MEASURES]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue()


def _wants_csv(chosen: str | None, accept: str) -> bool:
    """`chosen` (the `format` parameter) wins; else the Accept media range of highest q among JSON and CSV (the first
    listed on a tie); JSON when neither is named."""
    if chosen is not None:
        return chosen == "csv"
    best: tuple[float, int, bool] | None = None
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        csv_range = media in ("text/csv", "text/*")
        if q <= 0 or not (csv_range or media in ("application/json", "application/*", "*/*")):
            continue
        if best is None or q > best[0]:
            best = (q, index, csv_range)
    return best is not None and best[2]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()

