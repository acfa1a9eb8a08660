"""Batch preparation and schema evolution through the commit, against the in-memory destination
and its dialect (no database): each policy's DDL, history, held rows and migration files, the
dialect's name and column limits, and a table another writer changed after the batch was prepared."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig
from conduitd.core.evolution import plan
from conduitd.core.prepare import prepare
from conduitd.errors import SchemaIncompatible
from conduitd.runtime.commit import CommitResult, Committer
from conduitd.testing import Crash, MemoryDestination, MemoryDialect, MemoryStore
from conduitd.testing.scenario import batch, chunk


def pipeline(tmp_path: Path, mode: str = "auto", **extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "events", "source": "s", "destination": "d", "table": "events",
        "schema_evolution": {"mode": mode, "migrations_dir": str(tmp_path / "migrations"), **extra}})


class Run:
    """One pipeline committing batches p:0.. into a memory destination, as the pipeline does."""

    def __init__(self, res: PipelineConfig, destination: MemoryDestination) -> None:
        self.res, self.destination = res, destination
        self.committer = Committer(destination, res)
        self.offset = 0

    @classmethod
    async def open(cls, res: PipelineConfig, **options: Any) -> Run:
        destination = MemoryDestination(**options)
        await destination.open()
        await destination.setup(res)
        return cls(res, destination)

    async def commit(self, rows: list[dict[str, Any]]) -> CommitResult:
        start = None if self.offset == 0 else {"offset": self.offset}
        b = batch(chunk("p", start, {"offset": self.offset + len(rows)}, rows))
        result = await self.committer.commit(await self.committer.prepare(b))
        self.offset += len(rows)
        return result

    @property
    def store(self) -> MemoryStore:
        return self.destination.store

    def history(self) -> list[tuple[str, str | None, bool]]:
        return [(c.kind, c.column, c.applied) for c in self.store.history()]

    def dlq(self) -> list[tuple[str, str | None]]:
        return [(e.rule, e.column) for e in self.store.dlq("events_dlq")]


def test_auto_adds_columns_and_widens_with_ddl_in_the_batch_and_history(tmp_path: Path) -> None:
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path))
        await r.commit([{"id": 1, "n": 2}])
        await r.commit([{"id": 2, "n": 2.5, "note": "x"}])
        columns = r.store.columns("events") or {}
        assert {n: c.sql for n, c in columns.items()} == {"id": "BIGINT", "n": "NUMERIC(38,9)", "note": "TEXT"}
        assert r.store.rows("events") == [{"id": 1, "n": Decimal(2), "note": None},
                                          {"id": 2, "n": Decimal("2.5"), "note": "x"}]
        assert r.history() == [("create", None, True), ("add", "note", True), ("widen", "n", True)]
    asyncio.run(run())


def test_manual_holds_rows_in_the_dlq_and_writes_the_migration_only_after_commit(tmp_path: Path) -> None:
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path, "manual"))
        await r.commit([{"id": 1}])
        migrations = tmp_path / "migrations"
        r.destination.faults.arm("commit", error=Crash)
        with pytest.raises(Crash):
            await r.commit([{"id": 2, "note": "x"}, {"id": 3}])
        assert not migrations.exists(), "a migration file from a rolled-back batch"
        await r.commit([{"id": 2, "note": "x"}, {"id": 3}])
        assert [row["id"] for row in r.store.rows("events")] == [1, 3]
        assert r.dlq() == [("schema", "note")]
        assert r.history() == [("create", None, True), ("add", "note", False)]
        (written,) = migrations.iterdir()
        assert written.read_text() == 'ALTER TABLE "events" ADD COLUMN "note" TEXT;\n'
    asyncio.run(run())


def test_strict_stops_and_commits_nothing_of_the_batch(tmp_path: Path) -> None:
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path, "strict"))
        await r.commit([{"id": 1}])
        before = r.store.snapshot()
        with pytest.raises(SchemaIncompatible, match="no column 'note'"):
            await r.commit([{"id": 2, "note": "x"}])
        assert r.store.snapshot() == before
    asyncio.run(run())


def test_warn_writes_what_fits_and_leaves_the_table_alone(tmp_path: Path) -> None:
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path, "warn"))
        await r.commit([{"id": 1}])
        await r.commit([{"id": 2, "note": "x"}])
        assert r.store.rows("events") == [{"id": 1}, {"id": 2}]
        assert r.history() == [("create", None, True)]
    asyncio.run(run())


@pytest.mark.parametrize(("dialect", "rows", "held"), [
    (MemoryDialect(max_identifier_bytes=8), [{"id": 1, "a_long_name": 1}], "a_long_name"),
    (MemoryDialect(max_columns=2), [{"id": 1, "a": 1, "b": 2}], "b"),
    (MemoryDialect(fold_case=True), [{"id": 1, "Note": "x", "note": "y"}], "note"),
])
def test_names_and_columns_the_dialect_cannot_take_hold_their_rows_in_the_dlq(
        tmp_path: Path, dialect: MemoryDialect, rows: list[dict[str, Any]], held: str) -> None:
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path), dialect=dialect)
        await r.commit(rows)
        assert r.store.rows("events") == []
        assert r.dlq() == [("schema", held)]
        assert held not in (r.store.columns("events") or {})
    asyncio.run(run())


def test_a_field_name_made_of_sql_is_one_column_of_exactly_that_name(tmp_path: Path) -> None:
    name = 'a"; DROP TABLE events; --'
    async def run() -> None:
        r = await Run.open(pipeline(tmp_path))
        await r.commit([{"id": 1}])
        await r.commit([{"id": 2, name: "x"}])
        assert list(r.store.columns("events") or {}) == ["id", name]
        assert r.store.rows("events")[-1] == {"id": 2, name: "x"}
    asyncio.run(run())


def test_a_batch_prepared_ahead_against_a_table_another_writer_changed_is_prepared_again(tmp_path: Path) -> None:
    async def run() -> None:
        res = pipeline(tmp_path)
        r = await Run.open(res)
        await r.commit([{"id": 1}])
        await r.commit([{"id": 2}])  # no DDL: the table is known, the next batch is prepared ahead
        ahead = await r.committer.prepare(batch(chunk("p", {"offset": 2}, {"offset": 3}, [{"id": 3, "note": "x"}])))
        assert ahead.known and [c.kind for c in ahead.evolution.changes] == ["add"]  # type: ignore[union-attr]
        other = MemoryDestination(r.store)  # another replica adds the same column first
        await other.open()
        replica = Committer(other, res.model_copy(update={"name": "other"}))
        await replica.commit(await replica.prepare(batch(chunk("q", None, {"offset": 1}, [{"id": 9, "note": "y"}]))))
        result = await r.committer.commit(ahead)
        assert result.changes == ()  # no ADD COLUMN again: it would fail as a concurrent change
        assert sorted(row["id"] for row in r.store.rows("events")) == [1, 2, 3, 9]
    asyncio.run(run())


def test_the_plan_and_preparation_are_pure_over_the_dialect(tmp_path: Path) -> None:
    dialect = MemoryDialect()
    res = pipeline(tmp_path)
    rows = pa.table({"id": [1], "at": ["2024-01-02T03:04:05Z"], "tags": [["a"]]})
    evolution = plan(dialect, res, rows, None, warned=set())
    assert [c.kind for c in evolution.changes] == ["create"]
    assert evolution.changes[0].ddl == 'CREATE TABLE "events" ("id" BIGINT, "at" TIMESTAMPTZ, "tags" JSON)'
    prepared = prepare(dialect, res, batch(chunk("p", None, {"offset": 1}, rows.to_pylist())), None,
                       removed_warned=set())
    assert prepared.payload == dialect.encode(prepared.rows, prepared.columns)
    assert prepared.rows.column("tags").to_pylist() == ['["a"]']


def test_a_migration_file_that_cannot_be_written_does_not_fail_a_committed_batch(tmp_path: Path) -> None:
    async def run() -> None:
        (tmp_path / "migrations").write_text("a file where the directory should be")
        r = await Run.open(pipeline(tmp_path, "manual"))
        await r.commit([{"id": 1}])
        try:
            result = await r.commit([{"id": 2, "note": "x"}])
        finally:
            assert r.store.checkpoints("events") == {"p": {"offset": 2}}  # committed, whatever commit() said
        assert [c.kind for c in result.changes] == ["add"]
    asyncio.run(run())
