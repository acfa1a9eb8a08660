"""A Kafka `client` property that librdkafka refuses (it judges them only when a client is
created, after the config was loaded) is a config error naming the file, the key and the
property's line, like every other config error, and never the value (issue 8, item 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd import cli
from conduitd.config import KafkaSourceConfig
from conduitd.configfile import load_config
from conduitd.errors import ConfigError
from conduitd.sources.kafka.clients import create_client

HEAD = """\
sources:
  - name: k
    type: kafka
    brokers: "127.0.0.1:1"
    topics: [orders]
    group_id: g
    client:
"""  # the client's keys start at line 8
TAIL = """\
destinations:
  - name: lite
    type: sqlite
    path: {db}
resources:
  - name: orders
    source: k
    destination: lite
    dlq:
      type: kafka
      brokers: "127.0.0.1:1"
      topic: dead
      client:
        {dlq_key}: {dlq_value}
"""
GOOD = {"client.id": "conduitd", "socket.timeout.ms": 6000, "fetch.wait.max.ms": 100, "check.crcs": "true"}
BAD = {"security.protocol": "hunter22-protocol", "no.such.property": "hunter22", "my.passwd": "hunter22"}


def write(tmp_path: Path, client: list[tuple[str, Any]], dlq: tuple[str, Any] = ("client.id", "dead")) -> Path:
    lines = "".join(f"      {key}: {value!r}\n" if isinstance(value, str) else f"      {key}: {value}\n"
                    for key, value in client)
    path = tmp_path / "conduitd.yaml"
    path.write_text(HEAD + lines + TAIL.format(db=tmp_path / "out.db", dlq_key=dlq[0], dlq_value=dlq[1]))
    return path


def refused(client: Any, factory: Any, where: str) -> str:
    with pytest.raises(ConfigError) as caught:
        create_client(factory, {**client, "bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, client, where)
    return str(caught.value)


@settings(max_examples=40)
@given(good=st.lists(st.sampled_from(sorted(GOOD)), unique=True, max_size=4),
       bad=st.sampled_from(sorted(BAD)), at=st.integers(0, 4))
def test_a_refused_property_names_file_key_and_its_line(tmp_path: Path, good: list[str], bad: str, at: int) -> None:
    keys = [*good[:at], bad, *good[at:]]
    path = write(tmp_path, [(key, BAD[key] if key == bad else GOOD[key]) for key in keys])
    config = load_config(path, {})
    message = refused(config.sources[0].client, Consumer, 'source "k"')
    line = 8 + keys.index(bad)
    assert message.startswith(f"{path}:{line}: sources[0].client.{bad}: rejected by librdkafka (source \"k\"): "), \
        message
    assert "hunter22" not in message.lower()


def test_the_kafka_dlq_client_is_located_too(tmp_path: Path) -> None:
    path = write(tmp_path, [("client.id", "x")], dlq=("security.protocol", "hunter22-protocol"))
    config = load_config(path, {})
    dlq = config.resources[0].dlq
    message = refused(dlq.client, Producer, "the Kafka DLQ (topic dead)")
    assert message.startswith(f"{path}:22: resources[0].dlq.client.security.protocol: rejected by librdkafka")
    assert "hunter22" not in message


def test_validate_exits_2_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [("client.id", "x"), ("no.such.property", "hunter22")])
    assert cli.main(["validate", "-c", str(path)]) == 2
    shown = capsys.readouterr()
    said = shown.out + shown.err  # validate's table (stdout)
    assert f"{path}:9: sources[0].client.no.such.property: rejected by librdkafka" in said, said
    assert "hunter22" not in said and "Traceback" not in said


def test_a_mapping_built_in_code_is_named_as_before() -> None:
    source = KafkaSourceConfig(name="k", type="kafka", brokers="127.0.0.1:1", topics=("t",), group_id="g",
                               client={"no.such.property": "1"})
    message = refused(source.client, Consumer, 'source "k"')
    assert message.startswith('source "k": client.no.such.property: rejected by librdkafka')
