"""The source side of the contract kit (`conduitd.testing.contract` re-exports it): the chunks of
a partition chain exactly; a source resumes after the committed position with exactly the
records after it; `once` ends; malformed records come as rejects, never as exceptions."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conduitd.core.records import Chunk, Position, position_text
from conduitd.sources.base import FixedCheckpoints, Source
from conduitd.testing.contract_base import Contract


class SourceContract(Contract):
    """See the module docstring. Hooks: `make_source` and `write` (required), `write_malformed`.
    The tests write records `{"id": n, "name": "record n"}` in increasing `n`; `write` may spread
    them over partitions, keeping their order within each."""

    max_rows = 2
    """Rows per chunk asked of the sources (small: a few records make several chunks)."""
    records = 7
    """Records each test writes."""

    # -- hooks -----------------------------------------------------------------------------------

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        """A new source reading what `write` wrote (every call of one test reads the same data)."""
        raise NotImplementedError("make_source(once=..., max_rows=...): return a new source of yours")

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append the records to what the sources read."""
        raise NotImplementedError("write(records): append records to your source's data")

    async def write_malformed(self) -> bool:
        """Append one malformed record (one that cannot be decoded); False skips the test."""
        return False

    # -- helpers ---------------------------------------------------------------------------------

    async def read(self, committed: Mapping[str, Position] | None = None, *, max_rows: int | None = None
                   ) -> list[Chunk]:
        """Everything a `once` source hands over, from `committed`; each chunk is acknowledged as
        it comes (a source may wait for that before it ends)."""
        source = self.make_source(once=True, max_rows=max_rows or self.max_rows)
        stored = FixedCheckpoints(committed)
        chunks: list[Chunk] = []
        try:
            async for chunk in source.chunks(stored, asyncio.Event()):
                chunks.append(chunk)
                await source.acknowledge({chunk.partition: chunk.end})
        finally:
            await source.close()
        return chunks

    def ids(self, chunks: Sequence[Chunk]) -> list[int]:
        return [int(i) for c in chunks for i in (c.rows.column("id").to_pylist() if c.rows.num_rows else [])]

    def by_partition(self, chunks: Sequence[Chunk]) -> dict[str, list[Chunk]]:
        found: dict[str, list[Chunk]] = {}
        for c in chunks:
            found.setdefault(c.partition, []).append(c)
        return found

    async def write_numbered(self, first: int, count: int) -> list[int]:
        await self.write([{"id": n, "name": f"record {n}"} for n in range(first, first + count)])
        return list(range(first, first + count))

    # -- the tests -------------------------------------------------------------------------------

    def test_the_chunks_of_a_partition_chain_exactly(self) -> None:
        async def work() -> None:
            written = await self.write_numbered(0, self.records)
            chunks = await self.read()
            assert sorted(self.ids(chunks)) == written, "every record exactly once"
            for partition, theirs in self.by_partition(chunks).items():
                assert theirs[0].start is None, f"{partition}: nothing committed, yet its first chunk starts later"
                for before, after in itertools.pairwise(theirs):
                    assert position_text(after.start) == position_text(before.end), f"{partition}: a gap or overlap"
                ids = self.ids(theirs)
                assert ids == sorted(ids), f"{partition}: records out of order"
            for c in chunks:
                assert c.rows.num_rows <= self.max_rows, f"a chunk of {c.rows.num_rows} rows (max_rows {self.max_rows})"
                assert c.epoch == chunks[0].epoch
        self.run(work)

    def test_a_source_resumes_after_the_committed_position(self) -> None:
        async def work() -> None:
            await self.write_numbered(0, self.records)
            first = self.by_partition(await self.read())
            committed = {p: theirs[0].end for p, theirs in first.items()}
            expected = sorted(i for theirs in first.values() for i in self.ids(theirs[1:]))
            resumed = await self.read(committed)
            assert sorted(self.ids(resumed)) == expected, "not exactly the records after the committed positions"
            for partition, theirs in self.by_partition(resumed).items():
                assert position_text(theirs[0].start) == position_text(committed[partition])
            ends = {p: theirs[-1].end for p, theirs in first.items()}
            assert self.ids(await self.read(ends)) == [], "records again after their partition's last position"
            # What is written after a commit is read after it, and nothing before it.
            later = await self.write_numbered(self.records, 3)
            assert sorted(self.ids(await self.read(ends))) == later
        self.run(work)

    def test_once_ends_when_everything_that_existed_at_start_is_read(self) -> None:
        async def work() -> None:
            assert self.ids(await self.read()) == [], "an empty source handed over rows"
            written = await self.write_numbered(0, self.records)
            assert sorted(self.ids(await self.read())) == written
        self.run(work)

    def test_a_malformed_record_comes_as_a_reject_not_an_exception(self) -> None:
        async def work() -> None:
            await self.write_numbered(0, 2)
            if not await self.write_malformed():
                pytest.skip("write_malformed() wrote nothing (the source has no malformed records)")
            await self.write_numbered(2, 2)
            chunks = await self.read()
            assert sorted(self.ids(chunks)) == [0, 1, 2, 3]
            rejects = [r for c in chunks for r in c.rejects]
            assert len(rejects) == 1, rejects
            assert rejects[0].reason and rejects[0].partition in {c.partition for c in chunks}
            position_text(rejects[0].position)  # JSON, like every position
        self.run(work)
