"""`conduitd tune -c FILE [-r PIPELINE] [--status-url URL ...] [--json]`: what a running daemon
measured about each pipeline's batches, and what it suggests (batch size, poll size, replicas).

The measurements are the daemon's own (`/status`, under `tuning`: every commit of the last 50
batches, with its stage timings): a running pipeline under its real load is the only honest
source of a destination's commit cost, and reading them writes nothing anywhere. The daemon is
the one the config's `service.health_host`/`health_port` names unless `--status-url` names one or
more (several replicas of one fleet: partitions and replicas are then counted over all of them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from conduitd.config import Config, PipelineConfig, ServiceConfig
from conduitd.errors import ConfigError, DependencyUnreachable
from conduitd.runtime.suggestions import MIN_BATCHES, scale_out

SHARED = ("kafka", "kinesis", "postgres", "mysql")
"""Source types whose partitions replicas share (consumer groups, leases)."""
TIMEOUT = 10.0


async def tune(config: Config, only: Sequence[str], *, status_urls: Sequence[str], as_json: bool) -> int:
    """Print the tuning report of each selected pipeline; exit 5 when no daemon answers."""
    pipelines = [p for p in config.resources if not only or p.name in only]
    unknown = sorted(set(only) - {p.name for p in config.resources})
    if unknown:
        raise ConfigError(f"no pipeline named {unknown[0]!r} (defined: {', '.join(p.name for p in config.resources)})")
    urls = list(status_urls) or [default_url(config.service)]
    answers = await asyncio.gather(*(fetch_status(url) for url in urls))
    reports = [report(config, pipeline, answers, urls) for pipeline in pipelines]
    if as_json:
        print(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
    else:
        for entry in reports:
            print("\n".join(text(entry)))
    return 0


def default_url(service: ServiceConfig) -> str:
    if not service.health_port:
        raise ConfigError("the config sets no service.health_port (or sets 0, a free port): name the running "
                          "daemon's status with --status-url http://HOST:PORT/status")
    host = "127.0.0.1" if service.health_host in ("0.0.0.0", "::") else service.health_host
    return f"http://{'[' + host + ']' if ':' in host else host}:{service.health_port}/status"


async def fetch_status(url: str) -> dict[str, Any]:
    """The daemon's /status JSON; DependencyUnreachable when it does not answer with it."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise DependencyUnreachable(f"{url} answered HTTP {response.status}: is it conduitd's /status?")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DependencyUnreachable(f"no daemon answered at {url} ({type(exc).__name__}: {exc}); `tune` reads "
                                    "the measurements of a running `conduitd run`") from None
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict) or not isinstance(status.get("pipelines"), list):
        raise DependencyUnreachable(f"{url} did not answer with conduitd's /status JSON")
    return status


def report(config: Config, pipeline: PipelineConfig, answers: Sequence[dict[str, Any]],
           urls: Sequence[str]) -> dict[str, Any]:
    """One pipeline's tuning as the daemons report it, with replicas against partitions."""
    found = [(url, entry) for url, answer in zip(urls, answers, strict=True) for entry in answer["pipelines"]
             if isinstance(entry, dict) and entry.get("pipeline") == pipeline.name]
    if not found:
        return {"pipeline": pipeline.name, "found": False, "daemons": list(urls)}
    # The replica that committed most batches has the most measurements.
    url, entry = max(found, key=lambda item: int((item[1].get("tuning") or {}).get("batches") or 0))
    tuning: dict[str, Any] = entry.get("tuning") or {}
    suggestions = list(tuning.get("suggestions") or [])
    partitions: set[str] = set()
    for _, each in found:
        partitions.update(each.get("lag") or {}, each.get("positions") or {}, each.get("leases") or {})
    running = [each for _, each in found if each.get("state") in ("running", "retrying", "paused")]
    source_type = config.source(pipeline.source).type
    replicas = len(running)
    if source_type in SHARED:
        advice = scale_out(len(partitions), replicas, tuning)
        if advice is not None:
            suggestions.append(advice)
    return {"pipeline": pipeline.name, "found": True, "daemon": url, "state": entry.get("state"),
            "source_type": source_type, "partitions": len(partitions), "replicas": replicas,
            "rows_written": entry.get("rows_written"), "tuning": tuning, "suggestions": suggestions}


def text(entry: dict[str, Any]) -> list[str]:
    """The report of one pipeline for people."""
    name = entry["pipeline"]
    if not entry["found"]:
        return [f"{name}: not running on {', '.join(entry['daemons'])}: nothing measured"]
    tuning = entry["tuning"]
    batches = int(tuning.get("batches") or 0)
    if tuning.get("adaptive"):
        bounds = tuning.get("bounds") or {}
        size = (f"max_rows: auto, now {tuning.get('max_rows')} rows (bounds {bounds.get('min_rows')}.."
                f"{bounds.get('max_rows')}, {bounds.get('max_rows_by_bytes')} by max_bytes)")
    else:
        size = f"max_rows: {tuning.get('max_rows')}"
    lines = [f"{name} ({entry['state']}, measured by {entry['daemon']}): {size}, "
             f"target_latency {tuning.get('target_latency')}s"]
    measured = tuning.get("measured") or {}
    if batches < MIN_BATCHES or not measured.get("batches"):
        return [*lines, f"  {batches} batch(es) committed so far: suggestions need {MIN_BATCHES}; run it longer"]
    commit = measured["commit_seconds"]
    busy = measured.get("destination_busy")
    lines.append(f"  last {measured['batches']} batches: {measured['rows_per_batch']} rows each, commit "
                 f"{commit['median']}s median ({commit['max']}s max), {measured.get('rows_per_second')} rows/s, "
                 f"destination busy {busy if busy is None else f'{busy:.0%}'}")
    cost = measured.get("commit_cost")
    if cost:
        lines.append(f"  commit cost: {cost['fixed_seconds'] * 1000:.1f}ms a batch + "
                     f"{cost['seconds_per_million_rows']}s a million rows ({cost['basis']})")
    stages = measured.get("stage_seconds") or {}
    lines.append("  seconds a batch: " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    if entry["source_type"] in SHARED:
        lines.append(f"  partitions: {entry['partitions']} over {entry['replicas']} replica(s) named")
    if not entry["suggestions"]:
        lines.append("  suggestions: none (the measurements ask for no change)")
    for s in entry["suggestions"]:
        change = "" if s.get("suggested") is None else f": {s.get('now', '?')} -> {s['suggested']}"
        lines.append(f"  suggest {s['setting']}{change} ({s['why']})")
    return lines
