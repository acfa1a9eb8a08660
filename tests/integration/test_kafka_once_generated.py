"""Generated Kafka topics through `--once` runs (issue 8, item 20): any number of partitions, good
and poison records in any order, produced in rounds with a run after each. The runs read by direct
assignment from the checkpoints; every record ends up exactly once in the table or in the DLQ,
the checkpoints end at each partition's record count, and no log line carries a traceback or the
client's secret. Runs in process (a subprocess per example would cost seconds of imports)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime
from tests.helpers.daemon import write_config
from tests.helpers.kafka import Record, create_topic, kafka_source, new_topic_name, produce
from tests.helpers.kafka_checks import checkpoints

SECRET = "s3cr3t-Pa55:/@?#%"
KINDS = st.sampled_from(["ok", "ok", "ok", "nested", "not_json", "list", "empty", "big"])


def value(kind: str, i: int) -> bytes:
    return {
        "ok": json.dumps({"id": i, "name": f"user-{i}"}).encode(),
        "nested": json.dumps({"id": i, "name": "ünï", "tags": {"k": [i, None]}}).encode(),
        "not_json": f"not json {i}".encode(),
        "list": b"[1, 2]",
        "empty": b"",
        "big": json.dumps({"id": i, "name": "x" * 3000}).encode(),
    }[kind]


async def run_once(path: Path) -> dict[str, Any]:
    runtime = Runtime(load_config(path), once=True)
    try:
        assert int(await runtime.run()) == 0
    finally:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return runtime.statuses()[0].as_dict()


@settings(max_examples=10)
@given(partitions=st.integers(1, 4), max_rows=st.sampled_from([1, 7, 1000]),
       rounds=st.lists(st.lists(st.tuples(KINDS, st.integers(0, 3)), max_size=25), min_size=1, max_size=3))
async def test_generated_topics_every_record_once_in_the_table_or_the_dlq(
        partitions: int, max_rows: int, rounds: list[list[tuple[str, int]]], tmp_path_factory: pytest.TempPathFactory,
        kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any, caplog: pytest.LogCaptureFixture) -> None:
    topic = new_topic_name("gen")
    await create_topic(kafka_bootstrap, topic, partitions)
    source = kafka_source(kafka_bootstrap, topic, f"g-{topic}", max_record_bytes=2048)
    source["client"] = {**source["client"], "ssl.key.password": SECRET}  # type: ignore[dict-item]
    table = f"events_{topic.replace('-', '_')}"
    path = write_config(tmp_path_factory.mktemp("gen") / "c.yaml", {
        "service": {"once_retry_timeout": "20s"},
        "sources": [source],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": topic, "source": "k", "destination": "pg", "table": table,
                       "batch": {"max_rows": max_rows, "max_wait": "0.1s"}}],
    })
    where: dict[tuple[str, int], int] = {}  # (partition, offset) -> id
    offsets = [0] * partitions
    good: set[int] = set()
    i = 0
    caplog.clear()  # the fixture lives across the generated examples
    caplog.set_level(logging.INFO)
    statuses = []
    for records in rounds:
        batch = []
        for kind, p in records:
            p %= partitions
            batch.append(Record(value(kind, i), str(i).encode(), p))
            where[(f"{topic}:{p}", offsets[p])] = i
            offsets[p] += 1
            if kind in ("ok", "nested"):
                good.add(i)
            i += 1
        await produce(kafka_bootstrap, topic, batch)
        statuses.append(await run_once(path))

    rows = [r["id"] for r in await pg.fetch(f'SELECT id FROM "{pg_schema}"."{table}"')] if good else []
    dlq_table = f"{table}_dlq"
    exists = await pg.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{pg_schema}"."{dlq_table}"')
    dead = [where[(r["partition"], json.loads(r["position"])["offset"])] for r in await pg.fetch(
        f'SELECT partition, position::text AS position FROM "{pg_schema}"."{dlq_table}"')] if exists else []
    assert sorted(rows) == sorted(good), "a good record is missing or twice in the table"
    assert len(dead) == len(set(dead)) and not set(dead) & good
    assert set(dead) | set(rows) == set(range(i)), "a record is neither in the table nor in the DLQ"
    stored = await checkpoints(pg, pg_schema, topic)
    assert {k: v for k, v in stored.items() if v} == {f"{topic}:{p}": n for p, n in enumerate(offsets) if n}
    direct = [r for r in caplog.records if "by direct assignment" in r.getMessage()]
    assert len(direct) == len(rounds), "a run did not read by direct assignment"
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None and "Traceback" not in text, text
        assert SECRET not in text
    assert SECRET not in json.dumps(statuses, default=str)
