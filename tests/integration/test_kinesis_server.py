"""The Kinesis test helpers against the real local server (kinesis-local): puts, resharding, and a
drain that gives every record back once, each key's records in order across a split and a merge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import kinesis


@pytest.fixture
def stream(kinesis_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = kinesis.client(kinesis_endpoint)
    name = kinesis.new_stream_name()
    kinesis.create_stream(client, name, 2)
    yield client, name
    kinesis.delete_stream(client, name)
    client.close()


def by_key(values: list[dict[str, Any]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for value in values:
        seen.setdefault(value["key"], []).append(value["i"])
    return seen


def test_put_split_drain_gives_every_record_once(stream: tuple[Any, str]) -> None:
    client, name = stream
    first = [{"i": i, "key": f"k{i % 40}"} for i in range(520)]  # two PutRecords requests
    placed = kinesis.put_json(client, name, first, lambda r: r["key"])
    assert len(placed) == 520 and len({sequence for _, sequence in placed}) == 520

    parent = placed[0][0]
    children = kinesis.split(client, name, parent)
    assert len(children) == 2
    listed = {shard["ShardId"]: shard for shard in kinesis.shards(client, name)}
    assert {listed[child].get("ParentShardId") for child in children} == {parent}
    assert parent not in kinesis.open_shard_ids(client, name)

    second = [{"i": i, "key": f"k{i % 40}"} for i in range(520, 620)]
    placed_after = kinesis.put_json(client, name, second, lambda r: r["key"])
    assert parent not in {shard for shard, _ in placed_after}  # writes go to the children now

    drained = kinesis.drain(client, name)
    assert sorted(value["i"] for value in kinesis.values(drained)) == list(range(620))
    assert {(r["shard_id"], r["sequence_number"]) for r in drained} == set(placed) | set(placed_after)


def test_put_ordered_keeps_each_key_in_order_across_split_and_merge(stream: tuple[Any, str]) -> None:
    client, name = stream
    records = [{"i": i, "key": f"k{i % 20}"} for i in range(120)]
    kinesis.put_ordered(client, name, records[:40], lambda r: r["key"])
    low, high = kinesis.split(client, name, kinesis.open_shard_ids(client, name)[0])
    kinesis.put_ordered(client, name, records[40:80], lambda r: r["key"])
    [merged] = kinesis.merge(client, name, low, high)
    placed = kinesis.put_ordered(client, name, records[80:], lambda r: r["key"])
    assert {shard for shard, _ in placed} <= set(kinesis.open_shard_ids(client, name))
    assert merged in kinesis.open_shard_ids(client, name)

    drained = kinesis.values(kinesis.drain(client, name))
    assert sorted(value["i"] for value in drained) == list(range(120))
    assert by_key(drained) == by_key(records)
