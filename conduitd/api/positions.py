"""A checkpoint reset's target: what an operator asks for, turned into the source's own position
for one partition, and what moving there would re-read or skip.

- kafka, partition `topic:N`: `offset`, the next offset to read (within the partition's low and
  high watermarks), or `timestamp`, the first offset at or after it (`offsets_for_times`; past
  the last record: the high watermark);
- file (local), partition the file's path: `offset`, the byte to read from, 0 or just after a
  newline (Parquet: the row); the position gets the file's identity (`file_identity`);
- kinesis, partition `stream:shard`: `sequence`, the last sequence number taken as read;
- postgres and mysql tables: `watermark`, the cursor value read up to (rows with a greater cursor
  value are read); a table read whole has no watermark.

A raw `position` is stored as given, for any source (the caller answers for its shape). Anything
else is a `Problem` 422; an unreachable broker a 503. The count of what is re-read or skipped is
given where positions say it: Kafka records (offsets), bytes of a file, Parquet rows.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
from typing import Any

from conduitd.api.problems import Problem
from conduitd.api.reset_target import Ask, Target, compare, unfit
from conduitd.core.records import Position
from conduitd.sources.file_identity import line_position, open_file, row_position, whole_fingerprint


async def target(source: Any, partition: str, current: Position, ask: Ask) -> Target:
    """The position `ask` means for `partition` of `source` (a source config), compared with
    `current` (the stored one, None when there is none)."""
    kind = source.type
    if ask.position is not None:
        return _raw(kind, current, ask.position)
    if kind == "kafka":
        unfit(kind, ask, ("offset", "timestamp"))
        from conduitd.api.positions_kafka import kafka_target

        return await kafka_target(source, partition, current, ask)
    if kind == "file":
        unfit(kind, ask, ("offset",))
        return await asyncio.to_thread(_file, source, partition, current, ask)
    if kind == "kinesis":
        unfit(kind, ask, ("sequence",))
        assert ask.sequence is not None
        if not ask.sequence.isdigit():
            raise Problem(422, "a Kinesis sequence number is a string of digits")
        new = {"sequence": ask.sequence, "end": False}
        old = int(current["sequence"]) if isinstance(current, dict) and current.get("sequence") else None
        direction, _ = compare(old, int(ask.sequence), None)
        return Target(new, direction, note="records after this sequence number are read")
    if kind in ("postgres", "mysql"):
        unfit(f"{kind} table", ask, ("watermark",))
        if isinstance(current, dict) and "pass" in current:
            raise Problem(422, f"partition {partition!r} is read whole (no cursor column): there is no watermark; "
                               "give a raw position ({\"pass\": n, \"key\": null, \"done\": false} reads it again)")
        old = current.get("cursor") if isinstance(current, dict) else None
        direction, _ = compare(old, ask.watermark, None)
        return Target({"cursor": ask.watermark}, direction,
                      note="rows with a cursor value above the watermark are read")
    raise Problem(422, f"a {kind} source's positions have no named form: give a raw position")


def _raw(kind: str, current: Position, new: dict[str, Any]) -> Target:
    for key, unit in (("offset", "records" if kind == "kafka" else "bytes"), ("row", "rows")):
        if isinstance(current, dict) and isinstance(current.get(key), int) and isinstance(new.get(key), int):
            direction, count = compare(current[key], new[key], unit)
            return Target(new, direction, count, unit)
    return Target(new, "none" if new == current else None, note="a raw position is stored as given")


# -- files ---------------------------------------------------------------------------------------


def _file(source: Any, partition: str, current: Position, ask: Ask) -> Target:
    assert ask.offset is not None
    if partition.startswith("s3://"):
        raise Problem(422, "an S3 object's position holds its ETag: give a raw position")
    if current is None and not _read_by(source, partition):
        raise Problem(422, f"{partition!r} is not a file source {source.name!r} reads")
    try:
        opened = open_file(partition)
    except OSError as exc:
        raise Problem(422, f"file {partition!r} cannot be opened: {exc.strerror or type(exc).__name__}") from None
    try:
        parquet = (source.format == "parquet" or (source.format is None and partition.endswith(".parquet"))
                   or (isinstance(current, dict) and "row" in current))
        old_key = "row" if parquet else "offset"
        old = int(current[old_key]) if isinstance(current, dict) and current.get(old_key) is not None else None
        replaced = isinstance(current, dict) and current.get("inode") not in (None, opened.inode)
        if parquet:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(opened.handle).metadata.num_rows
            if ask.offset > rows:
                raise Problem(422, f"{partition!r} holds {rows} rows; row {ask.offset} is past them")
            new = row_position(opened, ask.offset, whole_fingerprint(opened))
        else:
            if ask.offset > opened.size:
                raise Problem(422, f"{partition!r} holds {opened.size} bytes; offset {ask.offset} is past them")
            if ask.offset and opened.read(ask.offset - 1, 1) != b"\n":
                raise Problem(422, f"offset {ask.offset} of {partition!r} is not the start of a line")
            new = line_position(opened, ask.offset)
    finally:
        opened.handle.close()
    unit = "rows" if parquet else "bytes"
    if replaced:
        return Target(new, None, unit=unit, note="the stored position belongs to a file since replaced")
    direction, count = compare(old, ask.offset, unit)
    return Target(new, direction, count, unit)


def _read_by(source: Any, partition: str) -> bool:
    """Whether `partition` is a file the source reads: its path, in its directory, or matched by its glob."""
    path = str(source.path)
    if partition == path:
        return True
    if os.path.isdir(path):
        return os.path.abspath(partition).startswith(os.path.abspath(path).rstrip(os.sep) + os.sep)
    return fnmatch.fnmatch(partition, path)
