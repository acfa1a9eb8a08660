"""Pausing a Kafka pipeline through the API stops its commits while its consumer stays in the
group (no rebalance, the same member), past the group's session timeout; resuming reads on from
where it paused, every record once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.api import Daemon, rows, serving, until
from tests.helpers.kafka import create_topic, group_members, json_record, kafka_source, new_topic_name, produce


async def written(daemon: Daemon, name: str) -> int:
    return int((await daemon.pipeline("admin-all", name)).get("rows_written", 0))


async def test_a_paused_kafka_pipeline_keeps_its_group_membership(tmp_path: Path, kafka_bootstrap: str) -> None:
    db = tmp_path / "t.db"
    topic = new_topic_name("pause")
    await create_topic(kafka_bootstrap, topic, 2)
    group = f"g-{topic}"
    paused_source = kafka_source(kafka_bootstrap, topic, group, format="json", start="earliest")
    witness = {**kafka_source(kafka_bootstrap, topic, f"{group}-witness", format="json", start="earliest"),
               "name": "k2"}
    config = {"sources": [paused_source, witness],
              "destinations": [{"name": "db", "type": "sqlite", "path": str(db)}],
              "resources": [{"name": "p_a", "source": "k", "destination": "db", "project": "a",
                             "batch": {"max_wait": 0.05}},
                            {"name": "p_w", "source": "k2", "destination": "db", "project": "a",
                             "batch": {"max_wait": 0.05}}]}
    await produce(kafka_bootstrap, topic, [json_record({"id": i}, partition=i % 2) for i in range(100)])
    async with serving(tmp_path, config) as daemon:
        async def both(count: int) -> bool:
            return await written(daemon, "p_a") == count and await written(daemon, "p_w") == count

        async def reached(name: str, count: int) -> bool:
            return await written(daemon, name) == count

        await until(lambda: both(100), "the first records", within=120)
        members = await group_members(kafka_bootstrap, group)
        assert len(members) == 1

        paused = await daemon.post("operator-a", "/pipelines/p_a/pause")
        assert paused.status_code == 200 and paused.json()["state"] == "paused", paused.text
        loop = asyncio.get_running_loop()
        since = loop.time()
        await produce(kafka_bootstrap, topic, [json_record({"id": i}, partition=i % 2) for i in range(100, 160)])
        # The witness (its own group) commits the new records; past the session timeout (6 s) a
        # consumer that stopped polling would have been dropped from the group.
        await until(lambda: reached("p_w", 160), "the witness to commit the new records")
        await until(lambda: loop.time() - since > 10, "the session timeout to pass")
        assert await written(daemon, "p_a") == 100
        assert rows(db, "SELECT count(*) FROM p_a") == [(100,)]
        assert await group_members(kafka_bootstrap, group) == members  # the same member, no rebalance
        state = await daemon.pipeline("viewer-a", "p_a")
        assert state["state"] == "paused" and state["problem"] is None

        assert (await daemon.post("operator-a", "/pipelines/p_a/resume")).status_code == 200
        await until(lambda: reached("p_a", 160), "p_a to read on")
    assert rows(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM p_a") == [(160, 160, 0, 159)]
