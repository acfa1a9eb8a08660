"""Kafka to PostgreSQL end to end: produced with aiokafka, consumed by the conduitd process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.kafka import Record, create_topic, json_record, kafka_source, new_topic_name, produce

N = 200_000


def event(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"user-{i}", "amount": round(i * 0.37, 2), "at": f"2026-01-01T00:00:{i % 60:02d}Z",
            "tags": {"k": i % 7}, "ok": i % 3 == 0}


def config(tmp_path: Path, bootstrap: str, topic: str, dsn: str, schema: str, **pipeline: Any) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "once_retry_timeout": "20s"},
        "sources": [kafka_source(bootstrap, topic, f"g-{topic}", **pipeline.pop("source", {}))],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "events", "source": "k", "destination": "pg", "table": "events",
                       "batch": {"max_rows": 20000, "max_wait": "0.5s"}, **pipeline}],
    })


@pytest.mark.parametrize("mode", ["append", "upsert"])
async def test_200k_records_from_six_partitions_arrive_exactly(
        mode: str, tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 6)
    await produce(kafka_bootstrap, topic, (json_record(event(i), key=i, partition=i % 6) for i in range(N)))
    extra: dict[str, Any] = {"mode": mode, "unique_key": ["id"]} if mode == "upsert" else {}
    result = conduitd("--once", "-c", str(config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema, **extra)),
                      timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = await pg.fetch(f'SELECT id, name, amount, "at", tags, ok FROM "{pg_schema}".events ORDER BY id')
    assert len(rows) == N
    for i, row in enumerate(rows):
        expected = event(i)
        assert row["id"] == i and row["name"] == expected["name"] and row["amount"] == expected["amount"]
        assert row["at"].isoformat() == expected["at"].replace("Z", "+00:00")
        assert json.loads(row["tags"]) == expected["tags"] and row["ok"] == expected["ok"]
    positions = {r["partition"]: json.loads(r["position"]) for r in await pg.fetch(
        f'SELECT partition, position::text FROM "{pg_schema}".conduitd_checkpoints')}
    assert positions == {f"{topic}:{p}": {"offset": N // 6 + (1 if p < N % 6 else 0)} for p in range(6)}
    again = conduitd("--once", "-c", str(tmp_path / "c.yaml"), timeout=120)
    assert again.returncode == 0 and '"0 records read' not in again.stderr
    assert await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".events') == N


async def test_once_commits_the_last_batch_without_waiting_for_max_wait(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """Under --once the source says when it has read everything: the last, partial batch is cut
    then, not after `batch.max_wait` (ten minutes here; the run is given two)."""
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 2)
    await produce(kafka_bootstrap, topic, (json_record(event(i), key=i, partition=i % 2) for i in range(30)))
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema, batch={"max_rows": 20000, "max_wait": "10m"})
    result = conduitd("--once", "-c", str(path), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".events ORDER BY id')] == list(range(30))


async def test_dry_run_reads_to_the_end_and_writes_nothing(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """`run --dry-run` over a Kafka source ends once it has read what the topic holds (it commits
    nothing, so the source cannot wait for its commits), and reports what a run would do."""
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 2)
    records = [json_record(event(i), key=i, partition=i % 2) for i in range(30)]
    await produce(kafka_bootstrap, topic, [*records, Record(b"not json", None, 0)])
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    result = conduitd("run", "-c", str(path), "--dry-run", "--json", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    [outcome] = json.loads(result.stdout)
    assert (outcome["records_read"], outcome["rows_written"], outcome["rows_rejected"]) == (31, 30, 1), outcome
    assert await pg.fetchval("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                             pg_schema) == 0


async def test_schema_of_a_topic_smaller_than_the_sample_ends_when_the_topic_is_read(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str) -> None:
    """`schema` samples up to 1,000 records; a topic holding 30 ends the sample once they are read
    (the source says so), not when the sample's 30 s limit runs out: 20 s are given here."""
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 2)
    await produce(kafka_bootstrap, topic, (json_record(event(i), key=i, partition=i % 2) for i in range(30)))
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    result = conduitd("schema", "-c", str(path), "events", timeout=20)
    assert result.returncode == 0, result.stderr[-3000:]
    exported = json.loads(result.stdout)
    assert exported["sampled_rows"] == 30
    assert {c["name"] for c in exported["columns"]} == {"id", "name", "amount", "at", "tags", "ok"}


async def test_poison_records_and_deletes(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 2)
    records = [json_record({"id": i, "v": f"v{i}", "gone": False}, key=i, partition=i % 2) for i in range(100)]
    poison = [
        Record(b"not json at all", b"p1", 0),
        Record(b"[1, 2, 3]", b"p2", 1),
        Record(b'{"id": 1000, "v": "\xff\xfe"}', b"p3", 0),
        Record(b'{"id": 1001, "v": "' + b"x" * 3000 + b'"}', b"p4", 1),
        Record(b"", b"p5", 0),
        Record(b'{"id": 1002, "v": "multi\\nline",\n "gone": false}', b"1002", 0),
    ]
    deletes = [
        Record(None, b"10", 0),                                      # tombstone, plain key
        Record(None, b'{"id": 11}', 1),                              # tombstone, JSON key
        json_record({"id": 12, "v": "x", "gone": True}, key=12, partition=0),  # soft delete
        json_record({"id": 13, "v": "late", "gone": False}, key=13, partition=1),  # an update
        Record(None, b"abc", 0),                                      # a key that is no id: poison
    ]
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema, mode="upsert", unique_key=["id"],
                  deletes={"soft_delete_column": "gone"}, source={"max_record_bytes": 2048})
    # First the table exists with its types; then the poison and the deletes arrive (a second run
    # resumes where the first stopped).
    for part in (records, [*poison, *deletes]):
        await produce(kafka_bootstrap, topic, part)
        result = conduitd("--once", "-c", str(path), timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
    ids = [r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".events ORDER BY id')]
    assert ids == [i for i in range(100) if i not in (10, 11, 12)] + [1002]
    assert await pg.fetchval(f'SELECT v FROM "{pg_schema}".events WHERE id = 13') == "late"
    dlq = await pg.fetch(f'SELECT partition, position, reason, payload FROM "{pg_schema}".events_dlq ORDER BY id')
    reasons = sorted(r["reason"].split(":")[0] for r in dlq)
    assert len(dlq) == 6, [dict(r) for r in dlq]
    assert reasons == sorted(["JSON value is a list, not an object", "empty record", "not valid JSON",
                              "not valid UTF-8 text", "column 'id'",
                              "record of 3021 bytes exceeds max_record_bytes (2048)"])
    for row in dlq:
        assert row["partition"].startswith(f"{topic}:") and "offset" in json.loads(row["position"])


async def test_metadata_columns_and_raw_format(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 1)
    await produce(kafka_bootstrap, topic, [Record(b"\x00\x01binary", b"k1", 0), Record(b"text", None, 0)])
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema,
                  source={"format": "raw", "metadata_columns": ["key", "topic", "partition", "offset", "timestamp"]})
    result = conduitd("--once", "-c", str(path), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = await pg.fetch(f'SELECT * FROM "{pg_schema}".events ORDER BY kafka_offset')
    assert [(r["value"], r["kafka_key"], r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows] == [
        (b"\x00\x01binary", b"k1", topic, 0, 0), (b"text", None, topic, 0, 1)]
    assert all(r["kafka_timestamp"] is not None for r in rows)


async def test_once_with_an_unreachable_broker_exits_5(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    path = write_config(tmp_path / "c.yaml", {
        "service": {"once_retry_timeout": "3s"},
        "sources": [kafka_source("127.0.0.1:1", "nothing", "g")],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "events", "source": "k", "destination": "pg"}],
    })
    result = conduitd("--once", "-c", str(path), timeout=60)
    assert result.returncode == 5, result.stderr[-2000:]
    assert "Kafka brokers 127.0.0.1:1 unreachable" in result.stderr


async def test_topic_pattern_reads_every_matching_topic_and_no_other(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """`topic_pattern` subscribes by regular expression: records of every matching topic arrive
    exactly once, each partition keeps its own checkpoint, and a topic that does not match is not
    read. (A poll then mixes topics: grouping it by partition must keep them apart.)"""
    base = new_topic_name("pat")
    sizes = {f"{base}-a": (3, 3000), f"{base}-b": (2, 2000), f"{base}x-c": (1, 500)}
    for topic, (partitions, count) in sizes.items():
        await create_topic(kafka_bootstrap, topic, partitions)
        await produce(kafka_bootstrap, topic, (json_record({"id": i, "src": topic}, key=i, partition=i % partitions)
                                               for i in range(count)))
    source = kafka_source(kafka_bootstrap, "unused", f"g-{base}", metadata_columns=["topic", "partition", "offset"])
    del source["topics"]
    source["topic_pattern"] = f"{base}-[ab]$"
    path = write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "once_retry_timeout": "20s"},
        "sources": [source],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "events", "source": "k", "destination": "pg", "table": "events",
                       "batch": {"max_rows": 1000, "max_wait": "0.5s"}}],
    })
    result = conduitd("--once", "-c", str(path), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = await pg.fetch(f'SELECT id, src, kafka_topic, kafka_partition, kafka_offset FROM "{pg_schema}".events')
    assert all(r["src"] == r["kafka_topic"] for r in rows), "a record was filed under another topic"
    got = sorted((r["kafka_topic"], r["id"]) for r in rows)
    assert got == sorted((t, i) for t in (f"{base}-a", f"{base}-b") for i in range(sizes[t][1]))
    positions = {r["partition"]: json.loads(r["position"])["offset"] for r in await pg.fetch(
        f'SELECT partition, position::text FROM "{pg_schema}".conduitd_checkpoints')}
    assert positions == {f"{t}:{p}": len(range(p, sizes[t][1], sizes[t][0]))
                         for t in (f"{base}-a", f"{base}-b") for p in range(sizes[t][0])}


async def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[str, int | None]:
    """The group's committed offsets, read with an independent client (aiokafka)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {f"{topic}:{p}": await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def test_positions_come_from_the_destination_and_the_group_offsets_follow(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    """After each commit the group's offsets are set too (for lag tools), but a partition starts
    where the destination's checkpoint says: here the table is rolled back (as by a restore from
    backup) behind the group's offsets, and the next run reads the rolled-back records again."""
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, 2)
    await produce(kafka_bootstrap, topic, (json_record({"id": i}, key=i, partition=i % 2) for i in range(1000)))
    path = config(tmp_path, kafka_bootstrap, topic, pg_dsn, pg_schema)
    assert conduitd("--once", "-c", str(path), timeout=120).returncode == 0
    checkpoint_table = f'"{pg_schema}".conduitd_checkpoints'
    assert await group_offsets(kafka_bootstrap, f"g-{topic}", topic, 2) == {f"{topic}:0": 500, f"{topic}:1": 500}

    # The "restore": partition 0 goes back to offset 400 (ids 800, 802, ..., 998 are gone).
    async with pg.transaction():
        await pg.execute(f'DELETE FROM "{pg_schema}".events WHERE id % 2 = 0 AND id >= 800')
        await pg.execute(f"UPDATE {checkpoint_table} SET position = '{{\"offset\": 400}}' "
                         "WHERE partition = $1", f"{topic}:0")
    result = conduitd("--once", "-c", str(path), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    ids = [r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}".events ORDER BY id')]
    assert ids == list(range(1000)), "the partition did not restart at the destination's checkpoint"
    assert await group_offsets(kafka_bootstrap, f"g-{topic}", topic, 2) == {f"{topic}:0": 500, f"{topic}:1": 500}
