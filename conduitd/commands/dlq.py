"""`conduitd dlq list|replay`: inspect rejected records, and re-run them through the current
rules and schema; the ones that pass move to the table, exactly once (in one transaction with
their removal from the DLQ)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

import orjson

from conduitd.config import Config, PipelineConfig
from conduitd.destinations import make_destination
from conduitd.destinations.base import DlqEntry, DlqFilter
from conduitd.dlq_sinks import read_file
from conduitd.errors import ConfigError
from conduitd.runtime.replay import REPLAY_BATCH, rejected_as_repeat, replay_entries


def _check_filter(where: DlqFilter) -> None:
    if where.limit is not None and where.limit < 1:
        raise ConfigError(f"--limit must be 1 or more (got {where.limit})")
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise ConfigError("--since must be before --until")


async def list_dlq(config: Config, pipeline: PipelineConfig, where: DlqFilter, *, as_json: bool) -> int:
    _check_filter(where)
    if pipeline.dlq.type == "kafka":
        raise ConfigError(f"the DLQ of {pipeline.name} is the Kafka topic {pipeline.dlq.topic}: read it with a "
                          "Kafka consumer (each entry's key is its id)")
    if pipeline.dlq.type == "file":
        assert pipeline.dlq.path
        entries = [_from_file(item) for item in await asyncio.to_thread(read_file, pipeline.dlq.path)]
        entries = _filtered(entries, where)
    else:
        entries = await _read_table(config, pipeline, where)
    if as_json:
        body = [{"id": e.id, "pipeline": e.pipeline, "partition": e.partition, "position": e.position,
                 "rule": e.rule, "reason": e.reason, "column": e.column, "value": e.value,
                 "payload": e.payload, "created_at": e.created_at} for e in entries]
        sys.stdout.write(orjson.dumps(body, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for e in entries:
        created = e.created_at.isoformat() if isinstance(e.created_at, datetime) else str(e.created_at)
        where_from = f"{e.partition} {orjson.dumps(e.position).decode()}"
        value = (e.value or "-")[:40]
        print(f"{e.id}\t{created}\t{e.rule}\t{e.column or '-'}\t{value}\t{where_from}\t{e.reason[:100]}")
    print(f"{len(entries)} DLQ row(s) of {pipeline.name}", file=sys.stderr)
    return 0


async def _read_table(config: Config, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
    """The DLQ table's rows; none when it does not exist (a read command creates nothing)."""
    destination = make_destination(config.destination(pipeline.destination))
    await destination.open(read_only=True)
    try:
        if await destination.table_columns(pipeline.dlq_table) is None:
            return []
        return await destination.read_dlq(pipeline, where)
    finally:
        await destination.close()


def _from_file(item: dict[str, Any]) -> DlqEntry:
    return DlqEntry(item["id"], item["pipeline"], item.get("partition"), item.get("position"), item["rule"],
                    item["reason"], item.get("column"), item.get("value"), item.get("payload"),
                    item.get("created_at"))


def _filtered(entries: list[DlqEntry], where: DlqFilter) -> list[DlqEntry]:
    def created(entry: DlqEntry) -> datetime:
        return datetime.fromisoformat(str(entry.created_at))

    chosen = [e for e in entries if (where.rule is None or e.rule == where.rule)
              and (where.since is None or created(e) >= where.since)
              and (where.until is None or created(e) < where.until)]
    return chosen[:where.limit] if where.limit else chosen


async def replay_dlq(config: Config, pipeline: PipelineConfig, where: DlqFilter) -> int:
    _check_filter(where)
    if pipeline.dlq.type != "table":
        raise ConfigError(f"dlq replay works on a DLQ table; {pipeline.name}'s DLQ is a {pipeline.dlq.type} "
                          "(its entries cannot leave it in the same transaction as the rows)")
    destination = make_destination(config.destination(pipeline.destination))
    await destination.open()
    moved = still = 0
    held: list[DlqEntry] = []
    try:
        await destination.setup(pipeline)
        entries = await destination.read_dlq(pipeline, where)
        if where.rule is None:
            held = [e for e in entries if rejected_as_repeat(pipeline, e)]
            entries = [e for e in entries if not rejected_as_repeat(pipeline, e)]
        for first in range(0, len(entries), REPLAY_BATCH):
            part = entries[first:first + REPLAY_BATCH]
            written, rejected = await replay_entries(destination, pipeline, part)
            moved, still = moved + written, still + rejected
    finally:
        await destination.close()
    print(f"replayed {len(entries)} DLQ row(s) of {pipeline.name}: {moved} now in {pipeline.table_name}, "
          f"{still} still rejected (kept in {pipeline.dlq_table} with the current reason)")
    if held:
        rules = ", ".join(sorted({e.rule for e in held}))
        print(f"left {len(held)} row(s) rejected by a `unique` rule in {pipeline.dlq_table} ({rules}): each repeats "
              f"a value its batch wrote to {pipeline.table_name}, so replaying it would store that value twice; "
              "name the rule with --rule to replay them anyway")
    return 0
