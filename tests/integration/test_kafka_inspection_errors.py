"""`schema`, `schema-compare`, `validate`, `run` and `--once` against brokers that do not answer
and with client properties librdkafka rejects: the documented exit codes, one clear line, no
flood of repeated log lines, no secret (issue 8, D8/D9). The real CLI against the real broker."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.kafka import create_topic, kafka_source, new_topic_name

SECRET = "hunter22-not-for-logs"
_STAMP = re.compile(r"^\S+ \S+ ")  # the text log format's date and time


def config(tmp_path: Path, brokers: str, pg_dsn: str, pg_schema: str, topic: str = "nothing",
           **source: Any) -> Path:
    return write_config(tmp_path / "c.yaml", {
        "service": {"once_retry_timeout": "3s"},
        "sources": [{**kafka_source(brokers, topic, f"g-{topic}"), **source}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "r", "source": "k", "destination": "pg"}],
    })


def assert_no_repeated_lines(stderr: str) -> None:
    lines = [_STAMP.sub("", line) for line in stderr.splitlines() if line.strip()]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", ["schema", "schema-compare"])
def test_inspecting_a_source_whose_brokers_do_not_answer_exits_5(
        tmp_path: Path, pg_dsn: str, pg_schema: str, command: str) -> None:
    result = conduitd(command, "r", "-c", str(config(tmp_path, "127.0.0.1:1", pg_dsn, pg_schema)), timeout=90)
    assert result.returncode == 5, (result.stdout[-500:], result.stderr[-2000:])
    assert "unreachable" in result.stderr
    assert "sampled_rows" not in result.stdout
    assert_no_repeated_lines(result.stderr)


def test_once_with_brokers_that_do_not_answer_says_each_error_once(
        tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    result = conduitd("--once", "-c", str(config(tmp_path, "127.0.0.1:1", pg_dsn, pg_schema)), timeout=90)
    assert result.returncode == 5, result.stderr[-2000:]
    assert_no_repeated_lines(result.stderr)


def test_an_empty_topic_is_sampled_as_no_rows(
        tmp_path: Path, pg_dsn: str, pg_schema: str, kafka_bootstrap: str) -> None:
    topic = new_topic_name()
    asyncio.run(create_topic(kafka_bootstrap, topic, 1))
    result = conduitd("schema", "r", "-c", str(config(tmp_path, kafka_bootstrap, pg_dsn, pg_schema, topic)),
                      timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert document["sampled_rows"] == 0
    assert document["columns"] == []


REJECTED = [
    ({"my.passwd": SECRET}, "my.passwd"),
    ({"sasl.jaas.config": f'org.example.Login required password="{SECRET}";'}, "sasl.jaas.config"),
    ({"ssl.key.pem": SECRET, "security.protocol": "SSL"}, "ssl.key.pem"),
]


@pytest.mark.parametrize(("client", "key"), REJECTED, ids=[k for _, k in REJECTED])
@pytest.mark.parametrize("command", [("validate",), ("--once",), ("run",), ("schema", "r")],
                         ids=["validate", "once", "run", "schema"])
def test_a_client_property_librdkafka_rejects_is_a_config_error(
        tmp_path: Path, pg_dsn: str, pg_schema: str, kafka_bootstrap: str,
        command: tuple[str, ...], client: dict[str, Any], key: str) -> None:
    path = config(tmp_path, kafka_bootstrap, pg_dsn, pg_schema, new_topic_name(), client=client)
    result = conduitd(*command, "-c", str(path), timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert f"client.{key}" in output
    assert 'source "k"' in output
    assert SECRET not in output
    assert "a bug in conduitd" not in output
    assert "Traceback" not in output


def test_a_kafka_dlq_property_librdkafka_rejects_is_a_config_error(
        tmp_path: Path, pg_dsn: str, pg_schema: str, kafka_bootstrap: str) -> None:
    path = write_config(tmp_path / "c.yaml", {
        "sources": [kafka_source(kafka_bootstrap, new_topic_name(), "g")],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "r", "source": "k", "destination": "pg",
                       "dlq": {"type": "kafka", "brokers": kafka_bootstrap, "topic": "d",
                               "client": {"ssl.key.pem": SECRET, "security.protocol": "SSL"}}}],
    })
    result = conduitd("--once", "-c", str(path), timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "client.ssl.key.pem" in output
    assert SECRET not in output
    assert "Traceback" not in output
