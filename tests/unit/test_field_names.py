"""Field names from data, prepared for a batch (pure, no service): internal state never shares
the namespace of user columns, and a name the destination cannot take holds only the rows that
have a value there (issue 8, items 4, 6 and 7). The same against the real stores, through the CLI:
tests/integration/test_field_names.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduitd.config import BatchConfig, PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.evolution import refused_names
from conduitd.core.prepare import Prepared, prepare
from conduitd.core.records import Batch, Chunk, Origin
from conduitd.core.schema import Column
from conduitd.destinations.postgres.dialect import PostgresDialect
from conduitd.destinations.sqlite import SqliteDialect
from conduitd.runtime.batching import END, ChunkQueue, cut_batches
from conduitd.runtime.inspection import compare

DIALECTS: dict[str, Dialect] = {"postgres": PostgresDialect("s"), "sqlite": SqliteDialect()}
SYSTEM = ["xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"]


def pipeline(**extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "ev", "source": "s", "destination": "d", **extra})


def batch(rows: pa.Table, deletes: list[bool] | None = None) -> Batch:
    return Batch(rows, (), {"p": None}, {"p": {"offset": rows.num_rows}}, 0, (Origin(0, "p", None),),
                 row_offsets=np.arange(rows.num_rows), deletes=None if deletes is None else np.array(deletes))


def prepared(dialect: Dialect, rows: pa.Table, live: dict[str, Column] | None = None, deletes: list[bool] | None = None,
             **extra: Any) -> Prepared:
    result = prepare(dialect, pipeline(**extra), batch(rows, deletes), live, removed_warned=set())
    assert result.failure is None, result.failure
    return result


def placed(result: Prepared) -> tuple[list[int], list[int]]:
    """(rows written, rows dead-lettered) as input row numbers."""
    return sorted(int(i) for i in result.source_rows), sorted(r.position["offset"] for r in result.rejects)


# -- item 4: no marker in the user's namespace ---------------------------------------------------


@pytest.mark.parametrize("kind", DIALECTS)
@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_field_named_like_the_old_delete_marker_is_plain_data(kind: str, mode: str) -> None:
    rows = pa.table({"id": [1, 2], "__conduitd_deleted": [True, False], "__conduitd_row": [7, 8]})
    result = prepared(DIALECTS[kind], rows, mode=mode, unique_key=["id"] if mode == "upsert" else [])
    assert result.deletes.num_rows == 0
    assert result.rows.column_names == ["id", "__conduitd_deleted", "__conduitd_row"]
    assert placed(result) == ([0, 1], [])


@pytest.mark.parametrize("kind", DIALECTS)
def test_deletes_travel_beside_the_rows(kind: str) -> None:
    rows = pa.table({"id": [1, 2, 3], "v": ["a", "b", None]})
    result = prepared(DIALECTS[kind], rows, deletes=[False, False, True], mode="upsert", unique_key=["id"])
    assert result.deletes.to_pylist() == [{"id": 3}]
    assert result.rows.column("id").to_pylist() == [1, 2]


@pytest.mark.parametrize("key", [["__conduitd_row"], ["row_"], ["row__"], ["row_", "row__max"]])
def test_the_last_row_per_key_wins_whatever_the_key_is_named(key: list[str]) -> None:
    rows = pa.table({**{k: [1, 1, 2] for k in key}, "v": ["old", "new", "x"]})
    result = prepared(DIALECTS["postgres"], rows, mode="upsert", unique_key=key)
    assert result.rows.column("v").to_pylist() == ["new", "x"]


async def collect(chunks: list[Chunk | None]) -> list[Batch]:
    queue = ChunkQueue()
    for item in chunks:
        queue.put_nowait(item)
    return [b async for b in cut_batches(queue, BatchConfig(max_rows=100, max_wait=60))]


def chunk(start: int, rows: pa.Table, deletes: list[bool] | None = None) -> Chunk:
    return Chunk("p", {"offset": start}, {"offset": start + rows.num_rows}, rows,
                 deletes=None if deletes is None else np.array(deletes))


async def test_a_batch_joins_its_chunks_deletes_in_row_order() -> None:
    [joined] = await collect([chunk(0, pa.table({"id": [1, 2]})), chunk(2, pa.table({"id": [3]}), [True]),
                              chunk(3, pa.table({"id": [4, 5]}), [False, True]), END])
    assert joined.rows.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert joined.delete_mask().tolist() == [False, False, True, False, True]


async def test_a_chunk_with_a_repeated_name_is_a_batch_of_its_own() -> None:
    repeated = pa.Table.from_arrays([pa.array([3]), pa.array([4])], names=["id", "id"])
    batches = await collect([chunk(0, pa.table({"id": [1, 2]})), chunk(2, repeated), chunk(3, pa.table({"id": [5]})),
                             END])
    assert [b.rows.column_names for b in batches] == [["id"], ["id", "id"], ["id"]]
    assert [b.end for b in batches] == [{"p": {"offset": 2}}, {"p": {"offset": 3}}, {"p": {"offset": 4}}]


# -- item 6: names the destination cannot take ---------------------------------------------------


@pytest.mark.parametrize("name", [*SYSTEM, "", "a\x00b", "c" * 64])
def test_postgres_holds_a_name_it_cannot_take_and_writes_the_rest(name: str) -> None:
    rows = pa.table({"id": [1, 2], name: [5, None]})
    result = prepared(DIALECTS["postgres"], rows)
    assert list(result.evolution.columns) == ["id"] if result.evolution else False
    assert placed(result) == ([1], [0])
    assert result.rejects[0].rule == "schema" and result.rejects[0].column == name
    assert result.rejects[0].payload.startswith('{"id":1,')


def test_postgres_names_its_system_column_in_the_reason() -> None:
    result = prepared(DIALECTS["postgres"], pa.table({"id": [1], "xmin": [5]}))
    assert result.rejects[0].reason == "column name 'xmin' is a PostgreSQL system column"


def test_a_column_the_table_has_is_fine_as_it_is() -> None:
    live = {"id": Column("id", pa.int64(), "bigint", native="int8"), "": Column("", pa.string(), "TEXT")}
    assert refused_names(DIALECTS["sqlite"], ["id", "ID", ""], live) == {
        "ID": "column name 'ID' and column 'id' are one column to the destination (it ignores the case of names)"}


def test_sqlite_takes_rowid_and_empty_names_but_not_nul() -> None:
    assert refused_names(DIALECTS["sqlite"], ["rowid", "oid", "_rowid_", "", "xmin", "a\x00"], None) == {
        "a\x00": "column name 'a\\x00' contains a NUL character, which SQLite names cannot hold"}


@pytest.mark.parametrize("kind", DIALECTS)
def test_a_repeated_field_sends_every_record_of_the_batch_to_the_dlq(kind: str) -> None:
    rows = pa.Table.from_arrays([pa.array([1, 2]), pa.array(["a", "b"]), pa.array(["c", None])],
                                names=["id", "name", "name"])
    result = prepared(DIALECTS[kind], rows)
    assert placed(result) == ([], [0, 1])
    assert {r.reason for r in result.rejects} == {"field name 'name' appears 2 times in the record: its value is "
                                                  "ambiguous"}
    assert result.rejects[0].payload == '{"id":1,"name":"a","name":"c"}'  # both values kept
    assert result.evolution is None  # nothing written: no table is created from it


# -- item 7: the column limit -------------------------------------------------------------------


@pytest.mark.parametrize("kind", DIALECTS)
def test_columns_past_the_limit_are_held_and_the_rest_created(kind: str) -> None:
    dialect = DIALECTS[kind]
    limit = dialect.max_columns
    names = [f"c{i}" for i in range(limit + 5)]
    fits = limit - 1  # beside the id
    rows = pa.table({"id": [1, 2], **{n: [None, 1] for n in names[:fits]}, **{n: [1, None] for n in names[fits:]}})
    result = prepared(dialect, rows, mode="upsert", unique_key=["id"])
    assert result.evolution is not None and len(result.evolution.columns) == limit
    assert "id" in result.evolution.columns
    assert placed(result) == ([1], [0])
    assert result.rejects[0].reason == f"the table would have more than {limit} columns"


def test_a_table_near_the_limit_takes_what_fits() -> None:
    dialect = DIALECTS["postgres"]
    live = {f"c{i}": Column(f"c{i}", pa.int64(), "bigint", native="int8") for i in range(1598)}
    rows = pa.table({"c0": [1, 2, 3], "n1": [1, None, None], "n2": [None, 1, None], "n3": [None, None, 1]})
    result = prepared(dialect, rows, live)
    assert result.evolution is not None
    assert [c.column for c in result.evolution.changes] == ["n1", "n2"]
    assert placed(result) == ([0, 1], [2])


def test_compare_reports_what_the_plan_holds() -> None:
    rows = pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3]), pa.array([4])],
                                names=["id", "xmin", "d", "d"])
    diff = compare(DIALECTS["postgres"], rows, None)
    assert set(diff.unstorable) == {"xmin", "d"} and [c.name for c in diff.added] == ["id"] and diff.drifted


# -- generated names ----------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from([*SYSTEM, "", "\x00", "a\x00b", '"', 'a"; DROP TABLE x; --', "id", "ID", "Id", "oid", "rowid",
                     "__conduitd_deleted", "__conduitd_row", "row_", "row__max", "kafka_key", "é", "É", "x" * 63,
                     "é" * 32, "y" * 64, "z" * 300]),
    st.text(max_size=8),
    st.text(alphabet="aAbB\x00\"' ", max_size=4),
)


def pg_takes(name: str) -> bool:
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return False
    return 0 < size <= 63 and "\x00" not in name and name not in SYSTEM


def sqlite_takes(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in name


VALUES = st.lists(st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=8, max_size=8), min_size=1, max_size=6)


@pytest.mark.parametrize("kind", DIALECTS)
@given(names=st.lists(NAMES, max_size=8), values=VALUES)
def test_every_record_is_written_or_dead_lettered_whatever_its_field_names(
        kind: str, names: list[str], values: list[list[int | None]]) -> None:
    dialect = DIALECTS[kind]
    all_names = ["id", *names]
    columns = [pa.array(range(len(values)), pa.int64())]
    columns += [pa.array([row[i] for row in values], pa.int64()) for i in range(len(names))]
    rows = pa.Table.from_arrays(columns, names=all_names)
    result = prepare(dialect, pipeline(), batch(rows), None, removed_warned=set())
    assert result.failure is None
    written, rejected = placed(result)
    assert sorted(written + rejected) == list(range(len(values)))  # each record exactly once
    assert all(r.reason and r.payload for r in result.rejects)
    takes = pg_takes if kind == "postgres" else sqlite_takes
    repeated = {n for n in all_names if all_names.count(n) > 1}
    if repeated:
        assert written == []
        return
    expected, keys = [], set()
    for name in all_names:  # the first of names that differ only in ASCII case wins in SQLite
        key = dialect.name_key(name)
        if takes(name) and key not in keys:
            expected.append(name)
            keys.add(key)
    assert result.evolution is not None and list(result.evolution.columns) == expected
    for row in written:  # written rows have no value in a held column; dead-lettered ones do
        assert all(values[row][i] is None for i, n in enumerate(names) if n not in expected)
    for row in rejected:
        assert any(values[row][i] is not None for i, n in enumerate(names) if n not in expected)
