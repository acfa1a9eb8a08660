"""A Parquet row refused after it was read (a repeated or empty column name, a value the table
cannot take) points its DLQ entry at its row, `{"row": n}`, as the reader's own rejects do (issue
8, D11); JSON lines and Kafka rows keep `{"offset": n}`, also when one batch holds both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.records import Chunk
from conduitd.runtime.batching import build_batch
from conduitd.sources.base import FixedCheckpoints
from tests.unit.test_file_source import source


async def read(path: Path, max_rows: int) -> list[Chunk]:
    return [c async for c in source(path, max_rows=max_rows).chunks(FixedCheckpoints(None), asyncio.Event())]


def test_each_parquet_row_has_its_row_number_as_position(tmp_path: Path) -> None:
    file = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": list(range(7))}), file)
    batch = build_batch(asyncio.run(read(file, max_rows=3)))
    assert [batch.position_of(r) for r in range(7)] == [{"row": n} for n in range(1, 8)]


def test_a_batch_of_parquet_and_json_lines_rows_keeps_each_rows_own_kind(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 0}\n{"id": 1}\n')
    pq.write_table(pa.table({"id": [2, 3]}), tmp_path / "b.parquet")
    batch = build_batch(asyncio.run(read(tmp_path, max_rows=100)))
    assert [batch.position_of(r) for r in range(4)] == [{"offset": 10}, {"offset": 20}, {"row": 1}, {"row": 2}]


@settings(max_examples=40)
@given(bad=st.lists(st.booleans(), min_size=1, max_size=30), max_rows=st.integers(min_value=1, max_value=8))
def test_rows_kept_beside_rejected_ones_keep_their_own_row_numbers(
        tmp_path_factory: object, bad: list[bool], max_rows: int) -> None:
    folder = tmp_path_factory.mktemp("pq")  # type: ignore[attr-defined]
    # 3 * 10**17 µs after 1970 is past 9999-12-31, the last date conduitd writes: such rows are rejected.
    stamps = pa.array([3 * 10**17 if b else 0 for b in bad], pa.timestamp("us"))
    pq.write_table(pa.table({"id": list(range(len(bad))), "at": stamps}), folder / "a.parquet")
    chunks = asyncio.run(read(folder / "a.parquet", max_rows))
    batch = build_batch(chunks)
    kept = [i for i, b in enumerate(bad) if not b]
    rejected = [i for i, b in enumerate(bad) if b]
    assert batch.rows.column("id").to_pylist() == kept  # every row once: a row or a reject
    assert [batch.position_of(r) for r in range(batch.rows.num_rows)] == [{"row": i + 1} for i in kept]
    assert [orjson.loads(r.payload)["id"] for r in batch.rejects] == rejected
    assert [r.position for r in batch.rejects] == [{"row": i + 1} for i in rejected]
