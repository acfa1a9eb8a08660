"""librdkafka client properties it rejects are ConfigErrors naming the property, never echoing a
value; librdkafka's repeated log lines are counted, not each said (issue 8, D8/D9)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.errors import ConfigError
from conduitd.sources.kafka.clients import Repeats, create_client

FACTORIES: list[Any] = [Consumer, Producer, AdminClient]
BASE = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}

secrets = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=8, max_size=40)


def rejected(client: dict[str, Any], factory: Any = Consumer) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        create_client(factory, {**client, **BASE}, client, 'source "k"')
    return caught.value


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(("client", "key"), [
    ({"my.passwd": "x"}, "my.passwd"),
    ({"sasl.jaas.config": 'org.example.Login required password="hunter22";'}, "sasl.jaas.config"),
    ({"ssl.key.pem": "notpem-hunter22", "security.protocol": "SSL"}, "ssl.key.pem"),
    ({"security.protocol": "hunter22-protocol"}, "security.protocol"),
])
def test_a_rejected_property_is_a_config_error_naming_it(factory: Any, client: dict[str, Any], key: str) -> None:
    message = str(rejected(client, factory))
    assert f"client.{key}" in message
    assert 'source "k"' in message
    assert "hunter22" not in message


@settings(max_examples=40)
@given(secret=secrets, key=st.sampled_from(["ssl.key.pem", "security.protocol", "sasl.mechanism",
                                            "sasl.jaas.config", "my.passwd", "debug"]),
       factory=st.sampled_from(FACTORIES))
def test_no_rejected_value_is_echoed(secret: str, key: str, factory: Any) -> None:
    client: dict[str, Any] = {key: secret, "security.protocol": "SSL"} if key == "ssl.key.pem" else {key: secret}
    try:
        create_client(factory, {**client, **BASE}, client, 'source "k"')
    except ConfigError as exc:
        assert secret not in str(exc)
        assert "client." in str(exc)
    else:  # librdkafka took the value as valid: nothing to report, nothing leaked
        pass


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["refused", "timed out", "down"]), st.integers(0, 10**6)),
                min_size=1, max_size=300))
def test_repeats_are_counted_not_said(events: list[tuple[str, int]]) -> None:
    """Every distinct message (numbers aside) is said at its 1st, 10th, 100th occurrence only."""
    repeats = Repeats()
    said = [s for text, n in events if (s := repeats.say(f"broker {text} after {n}ms")) is not None]
    for text in {t for t, _ in events}:
        seen = sum(1 for t, _ in events if t == text)
        mine = [s for s in said if f" {text} " in s]
        assert len(mine) == len([c for c in (1, 10, 100, 1000) if c <= seen])


def test_every_client_logs_through_python_logging_with_repeats_counted() -> None:
    settings_given = create_client(dict, BASE, {}, 'source "k"')
    logger = settings_given["logger"]
    assert isinstance(logger, logging.Logger)
    assert any(isinstance(f, Repeats) for f in logger.filters)
