"""The consumer's librdkafka properties: conduitd's defaults yield to the user's `client`, the
properties conduitd manages do not."""

from __future__ import annotations

from typing import Any

from conduitd.config import KafkaSourceConfig
from conduitd.sources.kafka.consumer import FETCH_QUEUE_BACKOFF_MS, ConsumerThread


def properties(client: dict[str, Any]) -> dict[str, Any]:
    source = KafkaSourceConfig(name="k", type="kafka", brokers="127.0.0.1:1", topics=("t",), group_id="g",
                               client=client)
    thread = ConsumerThread(source, once=True, poll_records=100, load_positions=dict, on_revoke=lambda: None)
    return thread.client_config()


def test_a_drained_partition_is_fetched_again_soon_unless_the_user_says_otherwise() -> None:
    assert FETCH_QUEUE_BACKOFF_MS < 100  # librdkafka's 1000 ms left polls empty after each drain
    assert properties({})["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS
    assert properties({"fetch.queue.backoff.ms": 500})["fetch.queue.backoff.ms"] == 500


def test_managed_properties_stay_conduitds() -> None:
    managed = properties({"session.timeout.ms": 7000})
    assert managed["enable.auto.commit"] is False and managed["group.id"] == "g"
    assert managed["bootstrap.servers"] == "127.0.0.1:1" and managed["session.timeout.ms"] == 7000
