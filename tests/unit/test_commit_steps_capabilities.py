"""The runtime adapts to a destination's `Capabilities` (issue 9, item 2), shown with the in-memory
destination told to lack each one. It raises `ContractViolation` when the runtime uses what its
capabilities deny (a savepoint, an upsert), so a test fails where the runtime did not adapt."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from conduitd.config import PipelineConfig
from conduitd.destinations.base import Capabilities
from conduitd.errors import ConduitError, ConfigError
from conduitd.runtime.commit import Committer
from conduitd.testing import MemoryDestination
from conduitd.testing.memory_destination import CAPABILITIES
from conduitd.testing.scenario import batch, chunk, malformed

APPEND = PipelineConfig(name="events", source="s", destination="d", table="events")
UPSERT = PipelineConfig(name="events", source="s", destination="d", table="events", mode="upsert", unique_key=("id",))


def lacking(**flags: bool) -> Capabilities:
    return dataclasses.replace(CAPABILITIES, **flags)


async def opened(pipeline: PipelineConfig, capabilities: Capabilities, **options: Any) -> MemoryDestination:
    d = MemoryDestination(capabilities=capabilities, **options)
    await d.open()
    await d.setup(pipeline)
    return d


async def commit(d: MemoryDestination, pipeline: PipelineConfig, start: int | None, end: int,
                 rows: list[dict[str, Any]], bad: int = 0) -> None:
    rejects = [malformed("p", (start or 0) + len(rows) + i, "not json") for i in range(bad)]
    b = batch(chunk("p", None if start is None else {"offset": start}, {"offset": end}, rows, rejects))
    committer = Committer(d, pipeline)
    await committer.commit(await committer.prepare(b))


def test_without_savepoints_a_refused_row_fails_the_batch_and_nothing_of_it_commits() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(savepoints=False), refuse=lambda t, row: "no" if row["id"] == 2 else None)
        await commit(d, APPEND, None, 1, [{"id": 1}])
        before = d.store.snapshot()
        with pytest.raises(ConduitError, match="cannot isolate it"):
            await commit(d, APPEND, 1, 3, [{"id": 2}, {"id": 3}])
        assert d.store.snapshot() == before
    asyncio.run(run())


def test_without_prepare_ahead_the_batch_is_prepared_inside_the_transaction() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(prepare_ahead=False))
        committer = Committer(d, APPEND)
        for start, end in ((None, 1), (1, 2)):
            prepared = await committer.prepare(batch(chunk("p", start and {"offset": start}, {"offset": end},
                                                           [{"id": end}])))
            assert not prepared.known
            await committer.commit(prepared)
        assert d.store.rows("events") == [{"id": 1}, {"id": 2}]
    asyncio.run(run())


def test_without_savepoints_a_batch_of_only_rejects_commits_them_to_the_dlq() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(savepoints=False))
        await commit(d, APPEND, None, 2, [], bad=2)
        assert len(d.store.dlq("events_dlq")) == 2
        assert d.store.checkpoints("events") == {"p": {"offset": 2}}
    asyncio.run(run())


def test_an_upsert_pipeline_on_a_destination_without_upsert_is_refused_clearly() -> None:
    async def run() -> None:
        d = await opened(UPSERT, lacking(upsert=False))
        with pytest.raises(ConduitError, match="upsert"):
            await commit(d, UPSERT, None, 1, [{"id": 1}])
        assert d.store.rows("events") == []
    asyncio.run(run())


def test_without_transactional_ddl_a_retry_after_a_failure_does_not_run_the_ddl_again() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(transactional_ddl=False))
        await commit(d, APPEND, None, 1, [{"id": 1}])
        d.faults.arm("compare_and_set")
        with pytest.raises(ConduitError):
            await commit(d, APPEND, 1, 2, [{"id": 2, "note": "x"}])
        assert "note" in (d.store.columns("events") or {})  # the DDL stayed: it is not transactional
        assert d.store.rows("events") == [{"id": 1, "note": None}]
        await commit(d, APPEND, 1, 2, [{"id": 2, "note": "x"}])
        assert d.store.rows("events") == [{"id": 1, "note": None}, {"id": 2, "note": "x"}]
    asyncio.run(run())


def test_without_transactional_ddl_the_history_still_records_the_applied_change() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(transactional_ddl=False))
        await commit(d, APPEND, None, 1, [{"id": 1}])
        d.faults.arm("compare_and_set")
        with pytest.raises(ConduitError):
            await commit(d, APPEND, 1, 2, [{"id": 2, "note": "x"}])
        await commit(d, APPEND, 1, 2, [{"id": 2, "note": "x"}])
        assert [(c.kind, c.column) for c in d.store.history()] == [("create", None), ("add", "note")]
    asyncio.run(run())


def test_deletes_on_a_destination_that_cannot_delete_are_a_config_error_never_dropped() -> None:
    async def run() -> None:
        d = await opened(UPSERT, lacking(deletes=False))
        await commit(d, UPSERT, None, 1, [{"id": 1}])
        before = d.store.snapshot()
        b = batch(chunk("p", {"offset": 1}, {"offset": 2}, [{"id": 1}], deletes=[True]))
        committer = Committer(d, UPSERT)
        with pytest.raises(ConfigError, match="cannot delete"):
            await committer.commit(await committer.prepare(b))
        assert d.store.snapshot() == before
    asyncio.run(run())


def test_without_transactional_ddl_a_batch_without_schema_changes_is_one_transaction() -> None:
    async def run() -> None:
        d = await opened(APPEND, lacking(transactional_ddl=False, prepare_ahead=True))
        committer = Committer(d, APPEND)
        for start, end in ((None, 1), (1, 2), (2, 3)):  # the table created, then known
            d.faults.trace.clear()
            await committer.commit(await committer.prepare(batch(chunk("p", start and {"offset": start},
                                                                       {"offset": end}, [{"id": end}]))))
        assert d.faults.trace.count("begin") == 1
        assert d.store.rows("events") == [{"id": 1}, {"id": 2}, {"id": 3}]
    asyncio.run(run())
