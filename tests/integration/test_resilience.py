"""A dropped database connection mid-run: the daemon reconnects and loses or duplicates nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.helpers.daemon import start_conduitd, write_config


async def test_connection_killed_mid_load_reconnects_without_loss(
        tmp_path: Path, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    data = tmp_path / "in"
    data.mkdir()
    total = 60_000
    (data / "a.jsonl").write_text("".join(json.dumps({"id": i, "v": "x" * 50}) + "\n" for i in range(total)))
    config = write_config(tmp_path / "c.yaml", {
        "service": {"log_format": "json", "retry_max_wait": "0.5s"},
        "sources": [{"name": "s", "type": "file", "path": str(data / "*.jsonl"), "poll_interval": "0.1s",
                     "read_size": "64KiB"}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "events", "source": "s", "destination": "pg", "table": "events",
                       "batch": {"max_rows": 500, "max_wait": "0.05s"}}],
    })
    log = tmp_path / "log"
    daemon = start_conduitd("-c", str(config), log=log)
    kills = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            exists = await pg.fetchval("SELECT to_regclass($1)", f'"{pg_schema}".events')
            count = await pg.fetchval(f'SELECT count(*) FROM "{pg_schema}".events') if exists else 0
            if count == total:
                break
            if 0 < count < total and kills < 3:
                kills += await pg.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                    f"conduitd {pg_schema}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.02)
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0
    assert kills >= 1, "no connection was killed: the test did not test anything"
    rows = await pg.fetchrow(f'SELECT count(*) AS n, count(DISTINCT id) AS d FROM "{pg_schema}".events')
    assert (rows["n"], rows["d"]) == (total, total)
    assert "retrying" in log.read_text()
