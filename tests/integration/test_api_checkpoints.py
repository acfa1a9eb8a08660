"""Checkpoint resets through the API: refused while the pipeline reads (409) and to anyone but an
admin (403); a dry run tells what would be re-read and changes nothing; a reset of a paused
pipeline is stored (compare-and-set, with its audit row) and resuming reads from it: a file source
into SQLite re-reads the rows after the offset (upsert: no duplicates), a Kafka partition re-reads
from an offset or from a time."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helpers.api import Daemon, rows, serving, until
from tests.helpers.kafka import create_topic, kafka_source, new_topic_name


def file_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "a").mkdir(exist_ok=True)
    return {"sources": [{"name": "src", "type": "file", "path": str(tmp_path / "a"), "format": "jsonl",
                         "poll_interval": 0.05}],
            "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
            "resources": [{"name": "p_a", "source": "src", "destination": "db", "project": "a", "mode": "upsert",
                           "unique_key": ["id"], "batch": {"max_wait": 0.05}}]}


def count(db: Path, sql: str) -> int:
    try:
        return int(rows(db, sql)[0][0])
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return -1


async def paused(daemon: Daemon, name: str) -> None:
    answer = await daemon.post("operator-a", f"/pipelines/{name}/pause")
    assert answer.status_code in (200, 202), answer.text
    await until(lambda: daemon.runtime.idle(name), "the pipeline to be paused with everything committed")


def stored(db: Path, partition: str) -> dict[str, Any]:
    [(position,)] = rows(db, "SELECT position FROM conduitd_checkpoints WHERE pipeline = 'p_a' AND partition = ?",
                         (partition,))
    found: dict[str, Any] = json.loads(position)
    return found


async def test_a_file_partition_reset_to_an_earlier_offset_reads_the_rows_again(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = file_config(tmp_path)
    data = tmp_path / "a" / "1.jsonl"
    lines = [json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in range(30)]
    data.write_text("".join(lines))
    offset = sum(len(line) for line in lines[:10])  # the start of the row with id 10
    async with serving(tmp_path, config) as daemon:
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 30, "the rows")
        partition = (await daemon.get("viewer-a", "/pipelines/p_a/checkpoints")).json()["checkpoints"][0]["partition"]
        assert partition == str(data)
        ask = {"partition": partition, "offset": offset}
        running = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset", json=ask)
        assert running.status_code == 409 and "pause it first" in running.json()["detail"]
        for who in ("viewer-a", "operator-a"):
            assert (await daemon.post(who, "/pipelines/p_a/checkpoints/reset", json=ask)).status_code == 403
        await paused(daemon, "p_a")
        before = stored(db, partition)
        assert before["offset"] == data.stat().st_size

        dry = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset", json={**ask, "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert dry.json()["direction"] == "re-read" and dry.json()["unit"] == "bytes"
        assert dry.json()["count"] == data.stat().st_size - offset and dry.json()["current"] == before
        assert stored(db, partition) == before  # a dry run changes nothing
        for wrong, why in (({"offset": offset + 1}, "not the start of a line"),
                           ({"offset": 10 ** 9}, "past them"),
                           ({"timestamp": "2026-01-01T00:00:00Z"}, "cannot be reset to a timestamp")):
            answer = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                       json={"partition": partition, **wrong})
            assert answer.status_code == 422 and why in answer.json()["detail"], answer.text
        both = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset", json={**ask, "sequence": "1"})
        assert both.status_code == 422

        done = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset", json=ask,
                                 headers={"Idempotency-Key": "c1"})
        assert done.status_code == 200, done.text
        assert stored(db, partition)["offset"] == offset and stored(db, partition) == done.json()["new"]
        # Rows changed in the table since: the re-read restores every row from id 10 on.
        with contextlib.closing(sqlite3.connect(db)) as connection, connection:
            connection.execute("UPDATE p_a SET name = 'changed'")
        resumed = await daemon.post("operator-a", "/pipelines/p_a/resume")
        assert resumed.status_code == 200, resumed.text
        await until(lambda: count(db, "SELECT count(*) FROM p_a WHERE name != 'changed'") == 20, "the re-read")
        await until(lambda: stored(db, partition)["offset"] == data.stat().st_size, "the checkpoint at the end")
    assert rows(db, "SELECT id, name FROM p_a ORDER BY id") == [
        (i, "changed" if i < 10 else f"n{i}") for i in range(30)]
    [(actor, before_state, after_state)] = rows(db, "SELECT actor, before_state, after_state FROM conduitd_audit "
                                                    "WHERE action = 'checkpoint_reset'")
    assert actor == "admin-a"
    assert json.loads(before_state) == {"partition": partition, "position": before}
    assert json.loads(after_state)["position"]["offset"] == offset


async def produce_at(bootstrap: str, topic: str, ids: range, base_ms: int) -> None:
    """Records `{"id": i}` to partition 0, the i-th stamped `base_ms + 1000 * i`."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in ids:
            await producer.send_and_wait(topic, json.dumps({"id": i}).encode(), partition=0,
                                         timestamp_ms=base_ms + 1000 * i)
    finally:
        await producer.stop()


async def test_a_kafka_partition_reset_to_an_offset_and_to_a_time(tmp_path: Path, kafka_bootstrap: str) -> None:
    db = tmp_path / "t.db"
    topic = new_topic_name("reset")
    await create_topic(kafka_bootstrap, topic, 2)
    base = int(time.time() * 1000) - 3_600_000
    await produce_at(kafka_bootstrap, topic, range(20), base)
    source = kafka_source(kafka_bootstrap, topic, f"g-{topic}", format="json", start="earliest")
    config = {"sources": [source], "destinations": [{"name": "db", "type": "sqlite", "path": str(db)}],
              "resources": [{"name": "p_a", "source": "k", "destination": "db", "project": "a",
                             "batch": {"max_wait": 0.05}}]}
    partition = f"{topic}:0"
    async with serving(tmp_path, config) as daemon:
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 20, "the records")
        running = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                    json={"partition": partition, "offset": 5})
        assert running.status_code == 409
        await paused(daemon, "p_a")
        assert stored(db, partition) == {"offset": 20}

        dry = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                json={"partition": partition, "offset": 5, "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert (dry.json()["direction"], dry.json()["count"], dry.json()["unit"]) == ("re-read", 15, "records")
        outside = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                    json={"partition": partition, "offset": 21})
        assert outside.status_code == 422 and "outside" in outside.json()["detail"]
        unknown = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                    json={"partition": f"{topic}:7", "offset": 0})
        assert unknown.status_code == 422
        assert (await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                  json={"partition": partition, "watermark": "5"})).status_code == 422

        done = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                 json={"partition": partition, "offset": 15})
        assert done.status_code == 200, done.text
        assert stored(db, partition) == {"offset": 15}
        assert (await daemon.post("operator-a", "/pipelines/p_a/resume")).status_code == 200
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 25, "records 15..19 again")

        await paused(daemon, "p_a")
        # Record 12 is stamped base + 12 s: a time just after record 11's lands on offset 12.
        at = (base + 11_500) / 1000
        moment = datetime.fromtimestamp(at, UTC).isoformat()
        by_time = await daemon.post("admin-a", "/pipelines/p_a/checkpoints/reset",
                                    json={"partition": partition, "timestamp": moment})
        assert by_time.status_code == 200, by_time.text
        assert by_time.json()["new"] == {"offset": 12} and by_time.json()["count"] == 8
        assert (await daemon.post("operator-a", "/pipelines/p_a/resume")).status_code == 200
        await until(lambda: count(db, "SELECT count(*) FROM p_a") == 33, "records 12..19 again")
        await until(lambda: stored(db, partition) == {"offset": 20}, "the checkpoint at the end")
    again = {i: n for i, n in rows(db, "SELECT id, count(*) FROM p_a GROUP BY id")}
    assert again == {i: 1 if i < 12 else 2 if i < 15 else 3 for i in range(20)}
    actions = rows(db, "SELECT action FROM conduitd_audit WHERE action = 'checkpoint_reset'")
    assert len(actions) == 2
