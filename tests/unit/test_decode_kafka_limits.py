"""Kafka values meet the same decoder limits as file lines: a value nested deeper than the limit,
or one pyarrow cannot represent, goes to the DLQ with the reason and its own offset; the others
are rows. Generated depths, every record exactly once."""

from __future__ import annotations

import numpy as np
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import KafkaSourceConfig
from conduitd.core.nesting import MAX_DEPTH
from conduitd.sources.kafka.decode import decode_partition

CONFIG = KafkaSourceConfig.model_validate({"name": "k", "type": "kafka", "brokers": "127.0.0.1:9", "topics": ["t"],
                                          "group_id": "g"})


def value(index: int, depth: int) -> bytes:
    text = "1"
    for level in range(depth - 1):
        text = '{"k": ' + text + "}" if level % 2 else "[" + text + "]"
    return f'{{"id": {index}, "v{index}": {text}}}'.encode()


@settings(max_examples=30)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=6))
def test_every_value_is_a_row_or_a_reject_at_its_offset(depths: list[int]) -> None:
    values = [value(i, d) for i, d in enumerate(depths)]
    messages = [Message(topic="t", partition=0, offset=100 + i, value=v, key=None) for i, v in enumerate(values)]
    decoded = decode_partition(CONFIG, "t/0", messages, np.arange(100, 100 + len(values)), (), False)
    deep = [i for i, d in enumerate(depths) if d > MAX_DEPTH]
    assert [(r.position, r.reason) for r in decoded.rejects] == [
        ({"offset": 100 + i}, f"nested deeper than {MAX_DEPTH} levels") for i in deep]
    ids = decoded.rows.column("id").to_pylist() if decoded.rows.num_rows else []
    assert ids == [i for i in range(len(values)) if i not in deep]
    assert sorted(decoded.row_offsets.tolist() + [100 + i for i in deep]) == list(range(100, 100 + len(values)))


def test_a_value_pyarrow_cannot_represent_says_why() -> None:
    messages = [Message(topic="t", partition=0, offset=7, value=b'{"id": 1, "v": [1, "x"]}', key=None),
                Message(topic="t", partition=0, offset=8, value=b'{"id": 2}', key=None)]
    decoded = decode_partition(CONFIG, "t/0", messages, np.array([7, 8]), (), False)
    (reject,) = decoded.rejects
    assert reject.position == {"offset": 7} and "/v/[]" in reject.reason and "number and string" in reject.reason
    assert decoded.rows.column("id").to_pylist() == [2]
