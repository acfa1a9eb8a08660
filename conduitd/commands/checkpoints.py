"""`conduitd checkpoints show|reset`: the positions stored in the destination."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from conduitd.config import Config
from conduitd.destinations import make_destination


async def show_checkpoints(config: Config, only: Sequence[str], *, as_json: bool) -> int:
    rows = []
    for pipeline in config.resources:
        if only and pipeline.name not in only:
            continue
        destination = make_destination(config.destination(pipeline.destination))
        await destination.open(read_only=True)
        try:
            rows += await destination.list_checkpoints(pipeline.name)
        finally:
            await destination.close()
    if as_json:
        print(orjson.dumps([{"pipeline": r.pipeline, "partition": r.partition, "position": r.position,
                             "updated_at": r.updated_at} for r in rows], default=str,
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    for row in rows:
        print(f"{row.pipeline}\t{row.partition}\t{orjson.dumps(row.position).decode()}\t{row.updated_at}")
    if not rows:
        print("no checkpoints stored")
    return 0


async def reset_checkpoints(config: Config, pipeline_name: str, partition: str | None) -> int:
    pipeline = next(r for r in config.resources if r.name == pipeline_name)
    destination = make_destination(config.destination(pipeline.destination))
    await destination.open()
    try:
        count = await destination.reset_checkpoints(pipeline.name, partition)
    finally:
        await destination.close()
    print(f"removed {count} checkpoint(s) of {pipeline.name}; the next run starts those partitions over")
    return 0
