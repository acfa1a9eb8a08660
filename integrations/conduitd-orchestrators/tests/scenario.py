"""The conduitd pipelines the orchestrator tests run for real: JSONL files into a SQLite table.

- `people`: 4 rows; the rule `range:age` (action dlq) rejects one, `not_null:name` (warn) flags
  one that is still written: 3 rows written, 1 to the DLQ.
- `strict`: a row with no id breaks `not_null:id` (action fail): the run exits 3.
- `unreachable`: in `busy.yml`, whose health port is held by `hold_port`: the run exits 5.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

PEOPLE = [{"id": 1, "name": "ada", "age": 36}, {"id": 2, "name": "bob", "age": 200},
          {"id": 3, "name": "cy", "age": 41}, {"id": 4, "name": None, "age": 20}]
STRICT = [{"id": 1, "name": "a"}, {"id": None, "name": "b"}]


def make(root: Path) -> Path:
    """Write the input files and `conduitd.yml` under `root`; return the config's path."""
    for name, rows in (("people", PEOPLE), ("strict", STRICT)):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _config(root, {})
    path = root / "conduitd.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def make_busy(root: Path, port: int) -> Path:
    """A config like `make`'s whose health port is `port` (held by the test: exit 5)."""
    path = root / "busy.yml"
    path.write_text(json.dumps(_config(root, {"health_port": port})))
    return path


def hold_port() -> socket.socket:
    """A listening socket on a free local port: a run whose health port it is exits 5."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held


def _config(root: Path, service: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": {"manifest_path": str(root / "manifest.jsonl"), **service},
        "sources": [{"name": "people_files", "type": "file", "path": str(root / "people"), "format": "jsonl"},
                    {"name": "strict_files", "type": "file", "path": str(root / "strict"), "format": "jsonl"}],
        "destinations": [{"name": "warehouse", "type": "sqlite", "path": str(root / "warehouse.db")}],
        "resources": [
            {"name": "people", "source": "people_files", "destination": "warehouse",
             "quality_checks": [{"column": "age", "check": "range", "min": 0, "max": 130, "action": "dlq"},
                                {"column": "name", "check": "not_null", "action": "warn"},
                                {"column": "id", "check": "not_null", "action": "fail"}]},
            {"name": "strict", "source": "strict_files", "destination": "warehouse",
             "quality_checks": [{"column": "id", "check": "not_null", "action": "fail"}]},
            {"name": "unreachable", "source": "people_files", "destination": "warehouse", "table": "unreachable"},
        ],
    }


def rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(root / "warehouse.db")
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def check_people_summary(summary: dict[str, Any], root: Path) -> None:
    """The summary of the `people` run says what the table holds."""
    assert summary["pipeline"] == "people" and summary["exit_code"] == 0, summary
    assert (summary["rows_read"], summary["rows_written"], summary["dlq_rows"]) == (4, 3, 1), summary
    assert summary["status"] == "partial", summary
    assert summary["quality"] == {"range:age": {"dlq": 1}, "not_null:name": {"warn": 1}}, summary["quality"]
    assert summary["positions_before"] == {}, summary
    assert list(summary["positions_after"]) == [str(root / "people" / "1.jsonl")], summary
    assert [c["change"] for c in summary["schema_changes"]] == ["create"], summary["schema_changes"]
    assert rows(root, "SELECT id FROM people ORDER BY id") == [(1,), (3,), (4,)]
