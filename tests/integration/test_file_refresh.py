"""`mode: full_refresh` into file destinations, through the real CLI: the seed tool's single output
file (`path: out.csv` with `write_mode: replace`) and a directory of parts, locally and on a local
S3 server (moto). A run replaces the contents with the source's rows; a reader of the output file
sees the old rows or the new ones, never a mix; a SIGKILLed run leaves the old rows, and the rerun
loads exactly the source."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from conduitd.destinations.files import FileDestination, FileDestinationConfig
from tests.helpers.daemon import conduitd, start_conduitd, stop_daemon, tail, write_config
from tests.helpers.s3 import BUCKET, KEY_ID, SECRET, s3_endpoint

__all__ = ["s3_endpoint"]  # the fixture, used by name


def _source(path: Path, ids: range) -> None:
    path.write_text("".join(json.dumps({"id": i, "name": f"n{i}", "code": f"{i:05d}"}) + "\n" for i in ids))


def _run_once(config: Path) -> None:
    result = conduitd("run", "-c", str(config), "--once")
    assert result.returncode == 0, result.stdout + result.stderr


def _csv_ids(text: str) -> list[int]:
    return [int(row["id"]) for row in csv.DictReader(io.StringIO(text))]


def _seed_config(tmp_path: Path, data: Path, out: Path, batch_rows: int = 50) -> Path:
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "version: '1.0'\n"
        "sources:\n"
        f"  - {{name: items_file, type: json, path: {data}}}\n"
        "destinations:\n"
        f"  - {{name: out, type: csv, path: {out}, write_mode: replace}}\n"
        "resources:\n"
        f"  - {{name: items, source: items_file, destination: out, query: n/a, batch: {{max_rows: {batch_rows}}}}}\n")
    return config


def test_single_output_file_is_replaced_whole_and_readers_see_old_or_new(tmp_path: Path) -> None:
    data, out = tmp_path / "items.json", tmp_path / "out.csv"
    _source(data, range(1, 301))
    config = _seed_config(tmp_path, data, out)
    _run_once(config)
    assert _csv_ids(out.read_text()) == list(range(1, 301))

    _source(data, range(101, 451))  # 1-100 gone, 301-450 new: 350 rows in 7 batches
    seen: list[list[int]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(_csv_ids(out.read_text()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _run_once(config)
    finally:
        done.set()
        reader.join()
    assert _csv_ids(out.read_text()) == list(range(101, 451))
    assert {len(ids) for ids in seen} <= {300, 350}, sorted({len(ids) for ids in seen})
    assert all(ids in (list(range(1, 301)), list(range(101, 451))) for ids in seen)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0]["code"] == "00101", "text keeps its leading zeros"

    parts = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / ".out.csv.conduitd").rglob("*.csv")]
    assert parts and all(p.startswith(".out.csv.conduitd/items/") for p in parts), parts
    state = orjson.loads((tmp_path / ".out.csv.conduitd" / "_conduitd_state.json").read_bytes())
    assert list(state["tables"]) == ["items"] and state["checkpoints"] == {}
    assert sum(p["rows"] for p in state["tables"]["items"]["parts"]) == 350

    _run_once(config)  # nothing changed: the same rows again, not twice
    assert _csv_ids(out.read_text()) == list(range(101, 451))


def test_sigkill_mid_run_keeps_the_old_file_and_rerun_loads_the_source(tmp_path: Path) -> None:
    data, out = tmp_path / "items.json", tmp_path / "out.csv"
    _source(data, range(1, 11))
    config = _seed_config(tmp_path, data, out, batch_rows=1000)
    _run_once(config)
    before = out.read_bytes()
    _source(data, range(5, 40_005))
    state_path = tmp_path / ".out.csv.conduitd" / "_conduitd_state.json"
    log = tmp_path / "run.log"
    proc = start_conduitd("run", "-c", str(config), "--once", log=log)
    try:
        deadline = time.monotonic() + 120
        while not orjson.loads(state_path.read_bytes())["checkpoints"]:  # the staging load has committed
            assert proc.poll() is None, tail(log)
            assert time.monotonic() < deadline, tail(log)
            time.sleep(0.02)
        proc.kill()
    finally:
        stop_daemon(proc)
    assert out.read_bytes() == before, "a killed run leaves the output file as it was"
    _run_once(config)
    assert _csv_ids(out.read_text()) == list(range(5, 40_005))
    leftovers = [p.name for p in (tmp_path / ".out.csv.conduitd").rglob("*") if "conduitd_refresh" in str(p)]
    assert not [p for p in leftovers if p.endswith(".csv")], leftovers


@pytest.mark.parametrize("where", ["local", "s3"])
def test_directory_of_parts_is_replaced(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "items.jsonl"
    _source(data, range(1, 121))
    destination: dict[str, Any] = {"name": "out", "type": "file", "format": "parquet"}
    if where == "local":
        destination["path"] = str(tmp_path / "out")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        destination.update(path=f"s3://{BUCKET}/refresh-{tmp_path.name}", endpoint_url=endpoint, region="us-east-1",
                           access_key_id=KEY_ID, secret_access_key=SECRET)
    config = write_config(tmp_path / "conduitd.yml", {
        "sources": [{"name": "src", "type": "file", "path": str(data)}],
        "destinations": [destination],
        "resources": [{"name": "items", "source": "src", "destination": "out", "mode": "full_refresh",
                       "batch": {"max_rows": 40}, "quality_checks": [
                           {"column": "id", "check": "range", "min": 0, "max": 100, "action": "dlq"}]}]})
    _run_once(config)
    _source(data, range(31, 151))
    _run_once(config)

    async def read() -> tuple[list[int], list[str], int]:
        settings = {k: v for k, v in destination.items() if k not in ("name", "type")}
        reading = FileDestination(FileDestinationConfig(name="out", type="file", **settings))
        await reading.open(read_only=True)
        try:
            table = await reading.read_table("items")
            names = [p.name for t in reading.state.tables.values() for p in t.parts]
            files = await reading._io("listing", reading.storage.files)
            assert table is not None
            return sorted(table.column("id").to_pylist()), names, len([f for f in files if f.endswith(".parquet")])
        finally:
            await reading.close()

    import asyncio

    ids, names, on_disk = asyncio.run(read())
    assert ids == list(range(31, 101))
    assert names and all(n.startswith("items/") for n in names), names
    assert on_disk == len(names), "old parts and staging parts are removed"
