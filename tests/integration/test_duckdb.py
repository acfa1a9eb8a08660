"""The DuckDB destination beyond the contract kit: upserts (with deletes and a new column) from
Arrow, DLQ rows that commit or roll back with the rows and the checkpoint, values of every type
read back as written, the `file_to_duckdb` template run as an operator runs it, and a `--once`
load SIGKILLed at random moments and run again: every row exactly once."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from conduitd.cli import main
from conduitd.config import PipelineConfig
from conduitd.core.records import Chunk
from conduitd.destinations.base import DlqFilter
from conduitd.errors import CheckpointConflict
from conduitd.runtime.commit import Committer, written_as
from conduitd.testing.scenario import batch, chunk, malformed
from tests.helpers.daemon import conduitd, start_conduitd, tail, write_config
from tests.helpers.kafka import free_port

duckdb = pytest.importorskip("duckdb")  # the duckdb extra


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(path))  # in this process: shares the open destination's database
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Any]:
    from conduitd.destinations.duckdb.destination import DuckdbDestination
    from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig

    destination = DuckdbDestination(DuckdbDestinationConfig(name="d", type="duckdb", path=str(path)))
    await destination.open()
    try:
        yield destination
    finally:
        await destination.close()


def test_upsert_merges_on_the_key_deletes_and_adds_a_column(tmp_path: Path) -> None:
    db = tmp_path / "u.duckdb"
    pipeline = PipelineConfig(name="up", source="s", destination="d", table="people", mode="upsert",
                              unique_key=("id",))

    async def work() -> None:
        async with opened(db) as destination:
            await destination.setup(pipeline)
            committer = Committer(destination, pipeline)
            first = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(1, 6)]
            await committer.commit(await committer.prepare(batch(chunk("p0", None, {"offset": 5}, first))))
            # id 2 twice in one batch (the last wins), id 3 updated, id 4 deleted, id 6 new, a new column.
            second: list[dict[str, Any]] = [{"id": 2, "name": "two", "score": 0.0, "city": "Oslo"},
                                            {"id": 3, "name": "three", "score": 3.5, "city": "Lima"},
                                            {"id": 4}, {"id": 6, "name": "six", "score": 6.0, "city": "Pune"},
                                            {"id": 2, "name": "TWO", "score": 2.25, "city": "Rome"}]
            result = await committer.commit(await committer.prepare(batch(chunk(
                "p0", {"offset": 5}, {"offset": 10}, second, deletes=[False, False, True, False, False]))))
            assert (result.rows_written, result.rows_deleted) == (3, 1)
            assert [c.kind for c in result.changes] == ["add"]
            assert await destination.load_checkpoints("up") == {"p0": {"offset": 10}}
        assert query(db, "SELECT id, name, score, city FROM people ORDER BY id") == [
            (1, "n1", 0.5, None), (2, "TWO", 2.25, "Rome"), (3, "three", 3.5, "Lima"), (5, "n5", 2.5, None),
            (6, "six", 6.0, "Pune")]
        assert query(db, "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'people' "
                         "AND constraint_type = 'PRIMARY KEY'") == [(1,)]
    asyncio.run(work())


def test_dlq_rows_commit_and_roll_back_with_the_rows_and_the_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    pipeline = PipelineConfig.model_validate({
        "name": "q", "source": "s", "destination": "d", "table": "orders", "dlq": {"type": "table"},
        "quality_checks": [{"column": "status", "check": "in_list", "values": ["new", "paid"], "action": "dlq"}]})
    rows = [{"id": 1, "status": "new"}, {"id": 2, "status": "lost"}, {"id": 3, "status": "paid"}]

    async def work() -> None:
        async with opened(db) as destination:
            await destination.setup(pipeline)
            committer = Committer(destination, pipeline)
            first = batch(chunk("p0", None, {"offset": 1}, [{"id": 0, "status": "new"}]))
            await committer.commit(await committer.prepare(first))
            # A stale start: the compare-and-set, the last step, fails; the rows and DLQ rows written
            # before it in the same transaction roll back with it.
            stale = batch(chunk("p0", {"offset": 99}, {"offset": 4}, rows, [malformed("p0", 2, "{oops")]))
            with pytest.raises(CheckpointConflict):
                await committer.commit(await committer.prepare(stale))
            assert await destination.read_dlq(pipeline, DlqFilter()) == []
            assert query(db, "SELECT id FROM orders") == [(0,)]
            good = batch(chunk("p0", {"offset": 1}, {"offset": 4}, rows, [malformed("p0", 2, "{oops")]))
            result = await committer.commit(await committer.prepare(good))
            assert (result.rows_written, result.dlq_rows) == (2, 2)
            entries = await destination.read_dlq(pipeline, DlqFilter())
            assert sorted((e.rule, orjson.loads(e.payload) if e.rule != "decode" else e.payload)
                          for e in entries) == [("decode", "{oops"), ("in_list:status", {"id": 2, "status": "lost"})]
            assert all(e.partition == "p0" and isinstance(e.created_at, datetime) for e in entries)
        assert query(db, "SELECT id FROM orders ORDER BY id") == [(0,), (1,), (3,)]
    asyncio.run(work())


def test_a_full_refresh_swaps_the_staging_rows_in_with_a_widened_column_and_the_key(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    pipeline = PipelineConfig(name="fr", source="s", destination="d", table="fr", mode="full_refresh",
                              unique_key=("id",))

    async def work() -> None:
        async with opened(db) as destination:
            await destination.setup(pipeline)
            old = [{"id": 1, "v": 1}, {"id": 2, "v": 2}]
            await Committer(destination, pipeline).commit(
                await Committer(destination, pipeline).prepare(batch(chunk("p0", None, {"offset": 2}, old))))
            staging = destination.refresh_table("fr")
            await destination.begin_refresh(pipeline, staging)
            assert await destination.load_checkpoints("fr") == {}
            loading = Committer(destination, written_as(pipeline, staging))
            # v widens to a decimal; id 3 twice: upserted into the staging table, the last wins
            new: list[dict[str, Any]] = [{"id": 2, "v": 2}, {"id": 3, "v": 2.5}, {"id": 3, "v": 3.5}]
            await loading.commit(await loading.prepare(batch(chunk("p0", None, {"offset": 3}, new))))
            assert query(db, "SELECT id FROM fr ORDER BY id") == [(1,), (2,)]  # readers see the old rows
            assert await destination.finish_refresh(pipeline, staging) == 2
            assert await destination.table_columns(staging) is None
            assert (await destination.table_columns("fr") or {})["v"].sql == "DECIMAL(38,9)"
        assert query(db, "SELECT id, v::DOUBLE FROM fr ORDER BY id") == [(2, 2.0), (3, 3.5)]
        assert query(db, "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = 'fr' "
                         "AND constraint_type = 'PRIMARY KEY'") == [(["id"],)]
    asyncio.run(work())


def test_values_of_every_type_read_back_as_written(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    pipeline = PipelineConfig(name="types", source="s", destination="d", table="typed")
    ts = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
    table = pa.table({
        "id": pa.array([1, 2], pa.int64()), "big": pa.array([2**64 - 1, 0], pa.uint64()),
        "ok": pa.array([True, None]), "f": pa.array([-0.0, float("inf")]),
        "amount": pa.array([Decimal("12.345"), Decimal("-0.001")], pa.decimal128(10, 3)),
        "at": pa.array([ts, None], pa.timestamp("us", tz="UTC")), "day": pa.array([date(2026, 1, 2), None]),
        "raw": pa.array([b"\x00\xff", b""]), "nested": pa.array([{"a": [1, 2]}, {"a": []}]),
        'odd "name"; DROP TABLE typed; --': pa.array(["x", "y"])})

    async def work() -> None:
        async with opened(db) as destination:
            committer = Committer(destination, pipeline)
            b = batch(Chunk("p0", None, {"offset": 2}, table, (), 0))
            await committer.commit(await committer.prepare(b))
            live = await destination.table_columns("typed")
            assert {n: c.sql for n, c in live.items()} == {
                "id": "BIGINT", "big": "UBIGINT", "ok": "BOOLEAN", "f": "DOUBLE", "amount": "DECIMAL(10,3)",
                "at": "TIMESTAMP WITH TIME ZONE", "day": "DATE", "raw": "BLOB", "nested": "JSON",
                'odd "name"; DROP TABLE typed; --': "VARCHAR"}
        got = query(db, 'SELECT big, ok, f, amount, "at", day, raw, nested::VARCHAR, '
                        '"odd ""name""; DROP TABLE typed; --" FROM typed ORDER BY id')
        assert got[0][:2] == (2**64 - 1, True) and str(got[0][2]) == "-0.0" and got[0][3] == Decimal("12.345")
        assert got[0][4] == ts and got[0][5] == date(2026, 1, 2) and got[0][6] == b"\x00\xff"
        assert json.loads(got[0][7]) == {"a": [1, 2]} and got[0][8] == "x"
        assert got[1] == (0, None, float("inf"), Decimal("-0.001"), None, None, b"", '{"a":[]}', "y")
    asyncio.run(work())


def test_the_file_to_duckdb_template_loads_files_into_duckdb(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    assert main(["template", "generate", "file_to_duckdb", "-o", str(config)], prog="conduit") == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text("id,item,amount\n1,pen,2.50\n2,ink,7.25\n")
    env = {"INPUT_PATH": str(tmp_path / "data" / "*.csv"), "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
           "CONDUITD_MANIFEST": str(tmp_path / "manifest.jsonl")}
    run = conduitd("run", "-c", str(config), "--once", env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    # (CSV text such as 2.50 is kept exactly as written: the file source's choice, not DuckDB's.)
    assert query(tmp_path / "w.duckdb", "SELECT id, item, amount::DECIMAL(5,2)::VARCHAR FROM orders ORDER BY id") \
        == [(1, "pen", "2.50"), (2, "ink", "7.25")]
    assert query(tmp_path / "w.duckdb", "SELECT count(*) FROM orders_dlq") == [(0,)]


def test_a_file_another_process_holds_or_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from conduitd.errors import ConfigError, DependencyUnreachable

    async def open_fails(path: Path, expected: type[Exception]) -> str:
        with pytest.raises(expected) as caught:
            async with opened(path):
                pass
        return str(caught.value)

    assert "does not exist" in asyncio.run(open_fails(tmp_path / "no" / "such" / "w.duckdb", ConfigError))
    db = tmp_path / "held.duckdb"
    with subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                           "print('held', flush=True); sys.stdin.read()", str(db)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert "another process may hold it" in asyncio.run(open_fails(db, DependencyUnreachable))
        finally:
            holder.kill()


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            pipelines: list[dict[str, Any]] = json.loads(response.read())["pipelines"]
            return pipelines[0] if pipelines else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


def test_a_once_load_killed_at_random_moments_commits_every_row_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(20261130)
    data = tmp_path / "in"
    data.mkdir()
    ids, bad = [], 0
    for part in range(3):
        lines = []
        for n in range(10_000):
            record_id = part * 100_000 + n
            if rng.random() < 0.002:
                lines.append(b"{broken line")
                bad += 1
            lines.append(orjson.dumps({"id": record_id, "name": f"r{record_id}", "v": rng.random(),
                                       "tags": [rng.randrange(9)]}))
            ids.append(record_id)
        (data / f"part-{part}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    db, port, log = tmp_path / "w.duckdb", free_port(), tmp_path / "log"
    config = write_config(tmp_path / "c.yml", {
        "service": {"log_format": "json", "health_port": port},
        "sources": [{"name": "f", "type": "file", "path": str(data / "*.jsonl"), "read_size": 32768}],
        "destinations": [{"name": "d", "type": "duckdb", "path": str(db)}],
        "resources": [{"name": "ev", "source": "f", "destination": "d", "table": "ev",
                       "batch": {"max_rows": 400}, "dlq": {"type": "table"}}]})
    killed_with = []
    for _ in range(3):
        proc = start_conduitd("run", "-c", str(config), "--once", log=log)
        try:
            seen = None
            deadline = time.monotonic() + 60
            while (seen is None or not seen.get("rows_written")) and proc.poll() is None:
                assert time.monotonic() < deadline, tail(log)
                seen = _status(port)
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))  # a random moment mid-load: the commits go on meanwhile
            if proc.poll() is None:
                proc.kill()
                killed_with.append(int((seen or {}).get("rows_written", 0)))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
    print("killed after these rows were committed by the process:", killed_with)
    assert killed_with, "every run ended before it could be killed"
    final = conduitd("run", "-c", str(config), "--once", timeout=120)
    assert final.returncode == 0, final.stderr + tail(log)
    stored = Counter(r[0] for r in query(db, "SELECT id FROM ev"))
    assert [i for i, n in stored.items() if n > 1] == [], "duplicated rows"
    assert set(stored) == set(ids), f"{len(set(ids) - set(stored))} rows missing"
    assert bad and query(db, "SELECT count(*), count(DISTINCT (partition, position)) FROM ev_dlq") == [(bad, bad)]
    sizes = {str(p): p.stat().st_size for p in data.iterdir()}
    assert {k: json.loads(v)["offset"] for k, v in query(db, "SELECT partition, position FROM "
                                                           "conduitd_checkpoints")} == sizes
