"""Which topics a Kafka source reads (issue 8, item 20: --once assigns them itself, so it must pick
exactly what the daemon's subscription picks): the named topics, or the topics whose name the
pattern matches from its start; internal topics only by name."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import KafkaSourceConfig
from conduitd.sources.kafka.topics import incomplete, matching_topics, partitions_of


@dataclass
class Topic:
    partitions: dict[int, object] = field(default_factory=dict)
    error: object | None = None


def source(**kwargs: object) -> KafkaSourceConfig:
    return KafkaSourceConfig.model_validate({"name": "k", "type": "kafka", "brokers": "b:1", "group_id": "g", **kwargs})


def test_a_pattern_matches_from_the_start_of_the_name() -> None:
    config = source(topic_pattern="orders-[ab]$")
    names = ["orders-a", "orders-b", "orders-c", "xorders-a", "orders-ab", "__consumer_offsets"]
    assert matching_topics(config, names) == ["orders-a", "orders-b"]
    assert matching_topics(source(topic_pattern="orders"), names) == ["orders-a", "orders-ab", "orders-b", "orders-c"]
    assert matching_topics(source(topic_pattern=".*"), names) == sorted(n for n in names if not n.startswith("__"))
    assert matching_topics(source(topics=["__consumer_offsets", "gone"]), names) == ["__consumer_offsets"]


def test_every_partition_of_every_wanted_topic_and_unsettled_metadata() -> None:
    topics = {"a": Topic({0: None, 1: None}), "b": Topic({0: None}), "c": Topic({}, error="LEADER_NOT_AVAILABLE")}
    assert partitions_of(source(topics=["a", "c"]), topics) == [("a", 0), ("a", 1)]
    assert incomplete(source(topics=["a", "c"]), topics) == ["c"]
    assert incomplete(source(topics=["a", "b"]), topics) == []


NAMES = st.text(st.sampled_from("abc-_.0"), min_size=1, max_size=6) | st.sampled_from(["__a", "__consumer_offsets"])


@settings(max_examples=100)
@given(st.dictionaries(NAMES, st.integers(0, 4), max_size=8), st.sampled_from(["a", "a.", "[ab]-", "b$", "a|c", "."]))
def test_generated_clusters_every_partition_of_the_matching_topics_once(
        layout: dict[str, int], pattern: str) -> None:
    topics = {name: Topic({p: None for p in range(count)}) for name, count in layout.items()}
    config = source(topic_pattern=pattern)
    chosen = partitions_of(config, topics)
    assert len(chosen) == len(set(chosen))
    assert set(chosen) == {(t, p) for t, n in layout.items()
                           if re.match(pattern, t) and not t.startswith("__") for p in range(n)}
