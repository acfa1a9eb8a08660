"""The contract kit (`conduitd.testing.contract`) run against the in-memory twins, in each of the
ways the memory destination can be told to behave: the kit's own reference, and a check that the
twins keep the contracts the built-in connectors keep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conduitd.destinations.base import Capabilities, Destination
from conduitd.sources.base import Source
from conduitd.testing import MemoryDestination, MemoryFeed, MemorySource, MemoryStore
from conduitd.testing.contract import DestinationContract, Refusal, SecretCase, SourceContract
from conduitd.testing.memory_transaction import Refusal as RefusalMode


class TestMemoryDestination(DestinationContract):
    refusal_mode: RefusalMode = "names_row"
    screens = False
    capabilities = Capabilities(transactional_ddl=True, savepoints=True, upsert=True, prepare_ahead=True,
                                atomic_checkpoint=True)

    @pytest.fixture(autouse=True)
    def _store(self) -> None:
        self.store = MemoryStore()

    def make_destination(self) -> Destination:
        return MemoryDestination(self.store, capabilities=self.capabilities, refusal=self.refusal_mode,
                                 screens=self.screens)

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        return self.store.rows(table)

    async def schema_history(self, pipeline: str) -> list[tuple[str, str | None]] | None:
        return [(c.kind, c.column) for c in self.store.history(pipeline)]

    def secret_cases(self) -> Sequence[SecretCase]:
        secret = "memory-Pa55word!"
        return [SecretCase(lambda: MemoryDestination(self.store, unreachable=True, password=secret), secret)]


class TestMemoryDestinationNamingNoRefusedRow(TestMemoryDestination):
    """Refusals that do not say which row (the runtime narrows by halves), found ahead by screening."""

    refusal_mode = "anonymous"
    screens = True


class TestMemoryDestinationWritingAroundRefusedRows(TestMemoryDestination):
    """Writes that find their refused rows themselves (RowsPartlyRefused)."""

    refusal_mode = "partly"


class TestMemoryDestinationWithoutSavepoints(TestMemoryDestination):
    """Without savepoints a refused row fails the batch (and nothing of it commits)."""

    capabilities = Capabilities(transactional_ddl=True, savepoints=False, upsert=True, prepare_ahead=False,
                                atomic_checkpoint=True)


class TestMemoryDestinationWithoutUpsert(TestMemoryDestination):
    """The scenario appends where the destination cannot upsert."""

    capabilities = Capabilities(transactional_ddl=True, savepoints=True, upsert=False, prepare_ahead=True,
                                atomic_checkpoint=True)


class TestMemoryDestinationWithoutTransactionalDdl(TestMemoryDestination):
    """DDL that outlives a rolled-back batch (as MySQL's does)."""

    capabilities = Capabilities(transactional_ddl=False, savepoints=True, upsert=True, prepare_ahead=True,
                                atomic_checkpoint=True)



class TestMemoryDestinationRefusingByRule(TestMemoryDestination):
    """A refusal the author describes (the `refusal` hook), not the default repeated key."""

    def make_destination(self) -> Destination:
        return MemoryDestination(self.store, refuse=lambda table, row: "no thirteen" if row.get("id") == 13 else None)

    async def refusal(self, destination: Destination) -> Refusal | None:
        return Refusal("lucky", [{"id": 1, "name": "one"}], [{"id": 12, "name": "a"}, {"id": 13, "name": "b"}], 1)


class TestMemorySource(SourceContract):
    @pytest.fixture(autouse=True)
    def _feed(self) -> None:
        self.feed = MemoryFeed()
        self.written = 0

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        return MemorySource(self.feed, once=once, max_rows=max_rows)

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self.feed.append(f"p{self.written % 2}", record)
            self.written += 1

    async def write_malformed(self) -> bool:
        self.feed.append("p0", b'{"id": 1, "name": ')
        return True

