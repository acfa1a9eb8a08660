"""Every writer advances its checkpoints in one order (sorted by partition), whatever order its
batch holds them in: two writers of the same partitions locking the checkpoint rows in their own
orders could deadlock each other (seen: a --once run beside a daemon of its group, 40P01)."""

from __future__ import annotations

import asyncio

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from conduitd.core.records import Batch, Position
from conduitd.runtime.commit import _advance_checkpoints


class Recording:
    def __init__(self) -> None:
        self.order: list[str] = []

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        self.order.append(partition)
        return True


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True))
def test_checkpoints_are_advanced_in_partition_order(partitions: list[str]) -> None:
    batch = Batch(pa.table({}), (), {p: {"offset": 0} for p in partitions}, {p: {"offset": 1} for p in partitions}, 0)
    tx = Recording()
    asyncio.run(_advance_checkpoints(tx, "pipeline", batch))  # type: ignore[arg-type]
    assert tx.order == sorted(partitions)
