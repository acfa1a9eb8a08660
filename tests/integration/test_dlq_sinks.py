"""DLQs outside the destination: a JSONL file and a Kafka topic, written before the commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.kafka import create_topic, new_topic_name

LINES = ['{"id": 1}', "not json", '{"id": 2}', "[1]", '{"id": 3}']


def config(tmp_path: Path, dsn: str, schema: str, dlq: dict[str, Any]) -> Path:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    (data / "a.jsonl").write_text("\n".join(LINES) + "\n")
    return write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl")}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": "events", "source": "s", "destination": "pg", "dlq": dlq}],
    })


async def test_file_dlq_gets_each_reject_with_an_id(tmp_path: Path, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    dlq_file = tmp_path / "dlq" / "events.jsonl"
    path = config(tmp_path, pg_dsn, pg_schema, {"type": "file", "path": str(dlq_file)})
    result = conduitd("--once", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".events') == 3
    entries = [json.loads(line) for line in dlq_file.read_text().splitlines()]
    assert [e["payload"] for e in entries] == ["not json", "[1]"]
    assert all(e["pipeline"] == "events" and e["rule"] == "decode" and len(e["id"]) == 24 for e in entries)
    assert await pg.fetchval("SELECT to_regclass($1)", f'"{pg_schema}".events_dlq') is None
    # A repeat (a batch replayed after a crash between the DLQ write and COMMIT) is listed once.
    with dlq_file.open("a") as handle:
        handle.write(json.dumps(entries[0]) + "\n")
    listed = conduitd("dlq", "list", "-c", str(path), "-r", "events", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [e["payload"] for e in json.loads(listed.stdout)] == ["not json", "[1]"]
    assert conduitd("dlq", "replay", "-c", str(path), "-r", "events").returncode == 2


async def test_kafka_dlq_topic_gets_each_reject(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = new_topic_name("dlq")
    await create_topic(kafka_bootstrap, topic, 1)
    path = config(tmp_path, pg_dsn, pg_schema, {"type": "kafka", "brokers": kafka_bootstrap, "topic": topic})
    result = conduitd("--once", "-c", str(path))
    assert result.returncode == 0, result.stderr
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=f"check-{topic}")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000, max_records=10)
        records = [r for part in batches.values() for r in part]
    finally:
        await consumer.stop()
    bodies = [json.loads(r.value) for r in records]
    assert [b["payload"] for b in bodies] == ["not json", "[1]"]
    assert [r.key.decode() for r in records] == [b["id"] for b in bodies]
