"""The connector contract kit (`conduitd.testing.contract`) run against the Kafka source: a fresh
topic of two partitions per test, written by an independent producer (aiokafka). The runs are
`--once` (partitions assigned directly, no group to join), so each test takes about a second."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conduitd.config import KafkaSourceConfig
from conduitd.sources.base import Source
from conduitd.sources.kafka import KafkaSource
from conduitd.testing.contract import SourceContract
from tests.helpers.kafka import Record, create_topic, json_record, kafka_source, new_topic_name, produce


class TestKafkaSourceContract(SourceContract):
    timeout = 60.0

    @pytest.fixture(autouse=True)
    def _topic(self, kafka_bootstrap: str) -> None:
        self.bootstrap, self.topic, self.written = kafka_bootstrap, new_topic_name("contract"), 0
        asyncio.run(create_topic(kafka_bootstrap, self.topic, 2))

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        config = KafkaSourceConfig.model_validate(kafka_source(self.bootstrap, self.topic, f"g-{self.topic}"))
        return KafkaSource(config, once=once, max_rows=max_rows, key_columns=(), tombstones=False,
                           unreachable_after=20)

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        produced = []
        for record in records:
            produced.append(json_record(dict(record), partition=self.written % 2))
            self.written += 1
        await produce(self.bootstrap, self.topic, produced)

    async def write_malformed(self) -> bool:
        await produce(self.bootstrap, self.topic, [Record(b'{"id": 1, "name": ', partition=0)])
        return True
