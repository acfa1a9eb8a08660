"""A daemon whose group cannot complete a rebalance says so (issue 8, item 20): instead of looking
idle (running, ready, no positions), /status shows the problem, /readyz is red and the
`conduitd_source_problem` gauge is 1. (That the problem clears once the group answers is shown by
tests/unit/test_kafka_assignment_watch.py: Tansu does not recover such a group even after the
silent member leaves.)

The stuck group is made on purpose: a member that joins with long session and rebalance timeouts
and then never syncs (tests/helpers/kafka.py SilentLeader) holds every rebalance of its group for
those timeouts, on Tansu (which answers the joins after half the session timeout and makes the
silent member the leader) and on Apache Kafka (which waits the rebalance timeout for it) alike.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.daemon import start_conduitd, write_config
from tests.helpers.kafka import (
    SilentLeader,
    create_topic,
    free_port,
    json_record,
    kafka_source,
    new_topic_name,
    produce,
)
from tests.helpers.kafka_checks import count_rows


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except OSError:
        return 0, b""


async def test_a_daemon_left_without_partitions_by_a_stuck_rebalance_is_not_ready(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    topic = new_topic_name("stuck")
    group = f"g-{topic}"
    await create_topic(kafka_bootstrap, topic, 2)
    await produce(kafka_bootstrap, topic, (json_record({"id": i}, partition=i % 2) for i in range(100)))
    port = free_port()
    path = write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "health_port": port},
        "sources": [kafka_source(kafka_bootstrap, topic, group)],  # session.timeout.ms 6000: the limit is 30 s
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "events", "source": "k", "destination": "pg", "table": "events",
                       "batch": {"max_wait": "0.2s"}}],
    })
    silent = SilentLeader(kafka_bootstrap, group, topic)
    log = tmp_path / "daemon.log"
    daemon = None
    try:
        await silent.join()
        daemon = start_conduitd("run", "-c", str(path), log=log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert daemon.poll() is None, log.read_text()[-3000:]
            code, body = await asyncio.to_thread(get, f"{base}/status")
            if code == 200:
                status = json.loads(body)["pipelines"][0]
                if status.get("problem"):
                    break
            await asyncio.sleep(0.5)
        assert status.get("problem"), f"no problem shown: {status}\n{log.read_text()[-3000:]}"
        assert "no partitions assigned" in status["problem"] and status["ready"] is False
        assert status["state"] == "running" and not status["positions"]
        code, body = await asyncio.to_thread(get, f"{base}/readyz")
        assert code == 503, body
        code, body = await asyncio.to_thread(get, f"{base}/metrics")
        assert b'conduitd_source_problem{pipeline="events"} 1.0' in body
        assert await count_rows(pg, pg_schema) == 0

        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait, 60) == 0, log.read_text()[-3000:]
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait(30)
        await silent.close()
    assert "Traceback" not in log.read_text()
