"""The key scan deletes only keys the source answered it does not have: a failed source lookup
deletes nothing (issue 10, item 4). Unit test of the shared polling loop with in-memory twins."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from conduitd.core.records import Chunk, Position
from conduitd.errors import ConduitError
from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.cursor import Plan
from conduitd.sources.tables.poller import PollingSource, Read

KEY = SourceColumn("id", "bigint", "N")
PLAN = Plan('"t"', [KEY], [KEY], None, None)


class Reader:
    where = "memory"
    errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, source_keys: set[int], failures: int) -> None:
        self.source_keys = source_keys
        self.failures = failures
        self.lookups: list[list[str]] = []

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def plan(self) -> Plan:
        return PLAN

    async def read(self, plan: Plan, after: dict[str, Any] | None, limit: int, partition: str) -> Read | None:
        return Read(pa.table({"id": pa.array([], pa.int64())}), [], None, 0)

    def lost(self, exc: BaseException) -> bool:
        return True

    def failure(self, exc: BaseException) -> ConduitError:
        return ConduitError(str(exc))

    def lag(self) -> dict[str, float]:
        return {}

    async def present_keys(self, plan: Plan, names: Sequence[str], keys: Sequence[Sequence[str]]) -> set[int]:
        self.lookups.append([k[0] for k in keys])
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset while looking keys up")
        return {i for i, k in enumerate(keys) if int(k[0]) in self.source_keys}


class Destination:
    leases = None

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys

    async def committed(self) -> dict[str, Position]:
        return {}

    async def revoke(self) -> None: ...

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        start = 0 if after is None else self.keys.index(after[0]) + 1
        return [(k,) for k in self.keys[start:start + limit]]


async def deletes_of(reader: Reader, destination: Destination, max_rows: int) -> list[list[int]]:
    source = PollingSource(reader, "t", name="db", pipeline="p", once=True, max_rows=max_rows, poll_interval=0.01,
                           unreachable_after=5.0, key_scan=3600.0, key_columns=("id",))
    chunks: list[Chunk] = [c async for c in source.chunks(destination, asyncio.Event())]  # type: ignore[arg-type]
    deletes = [c for c in chunks if c.deletes is not None]
    assert all(c.deletes is not None and c.deletes.all() for c in deletes)
    assert all(c.rows.num_rows == 0 for c in chunks if c.deletes is None)  # the pass's end, nothing else
    return [c.rows.column("id").to_pylist() for c in deletes]


async def test_only_keys_the_source_lacks_are_deleted_chunk_by_chunk() -> None:
    reader = Reader(source_keys={1, 2, 4, 5, 7}, failures=0)
    assert await deletes_of(reader, Destination([1, 2, 3, 4, 5, 6, 7, 8]), max_rows=3) == [[3], [6], [8]]
    assert reader.lookups == [["1", "2", "3"], ["4", "5", "6"], ["7", "8"]]


async def test_a_failed_lookup_deletes_nothing_and_the_scan_comes_again_whole() -> None:
    reader = Reader(source_keys={1, 2, 3, 4}, failures=1)
    assert await deletes_of(reader, Destination([1, 2, 3, 4]), max_rows=10) == []
    assert reader.lookups == [["1", "2", "3", "4"], ["1", "2", "3", "4"]]  # the failed one, then again
