"""The Kinesis source under faults no local server emulates: throttles, expired iterators, refused
credentials, with exact control over what each call answers. The source's own aiobotocore client
(made by `KinesisApi.open` from the config) is wrapped in aiobotocore's `AioStubber`, so requests
and answers are checked against the Kinesis service model; no request leaves the process.

`Script` answers a call with the first queued answer of the same operation whose expected
parameters match (the stock stubber answers strictly in queue order, but shard discovery runs
whenever a shard task ends or an end is acknowledged, and shard tasks run side by side, so the
interleaving of calls is not the test's to fix). A call nothing answers fails the test with an
AssertionError, which the source hands over unchanged.

The test plays the pipeline: each chunk must start at the committed position, is "committed"
at once, and its end is acknowledged."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.stub import AioStubber
from aws_kinesis_agg.aggregator import RecordAggregator
from botocore.stub import ANY

from conduitd.core.records import Chunk, Position
from conduitd.errors import ConfigError
from conduitd.sources.base import Leases
from conduitd.sources.kinesis.api import KinesisApi
from conduitd.sources.kinesis.settings import KinesisSourceConfig
from conduitd.sources.kinesis.shards import readable, shards_of
from conduitd.sources.kinesis.source import KinesisSource

STREAM = "orders"
SECRET = "stub-secret-5f0c1d9e7a"
HASH_ALL = {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)}


# -- the stubbed service ---------------------------------------------------------------------

class Script(AioStubber):  # type: ignore[misc]  # aiobotocore ships no types
    """AioStubber answering by operation and parameters (see the module docstring). `listing` is
    ListShards' answer whenever no ListShards answer is queued; an iterator in `idle` is a shard
    with nothing new (empty page, same iterator, MillisBehindLatest 0) as often as it is read."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.listing: list[dict[str, Any]] | None = None
        self.idle: set[str] = set()
        self.listed = asyncio.Event()
        """Set at each ListShards call."""

    def _assert_expected_params(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                                **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))
        if model.name == "ListShards":
            self.listed.set()
        for index, entry in enumerate(self._queue):
            expected = entry["expected_params"]
            if entry["operation_name"] == model.name and (
                    expected is None or (set(expected) == set(params)
                                         and all(expected[k] == params[k] for k in expected))):
                del self._queue[index]
                context["scripted"] = entry["response"]
                return
        if model.name == "ListShards" and self.listing is not None:
            answer: dict[str, Any] = {"Shards": copy.deepcopy(self.listing)}
        elif model.name == "GetRecords" and params.get("ShardIterator") in self.idle:
            answer = {"Records": [], "NextShardIterator": params["ShardIterator"], "MillisBehindLatest": 0}
        else:
            raise AssertionError(f"unscripted call {model.name} {params}")
        self._validate_operation_response(model.name, answer)
        context["scripted"] = (AioAWSResponse(None, 200, {}, None), answer)

    def _get_response_handler(self, model: Any, params: Any, context: dict[str, Any],
                              **kwargs: Any) -> Any:
        return context.pop("scripted")

    def iterator(self, shard_id: str, answer: str, kind: str = "TRIM_HORIZON", after: str | None = None) -> None:
        expected: dict[str, Any] = {"StreamName": STREAM, "ShardId": shard_id, "ShardIteratorType": kind}
        if after is not None:
            expected["StartingSequenceNumber"] = after
        self.add_response("get_shard_iterator", {"ShardIterator": answer}, expected)

    def page(self, iterator: str, records: Sequence[dict[str, Any]], following: str | None, *,
             behind: int = 1000) -> None:
        """One GetRecords answer; `following` None: the shard ends here."""
        answer: dict[str, Any] = {"Records": list(records), "MillisBehindLatest": behind}
        if following is not None:
            answer["NextShardIterator"] = following
        else:
            answer["ChildShards"] = []
        self.add_response("get_records", answer, {"ShardIterator": iterator, "Limit": ANY})

    def error(self, method: str, code: str, expected: dict[str, Any] | None = None, status: int = 400,
              message: str = "") -> None:
        self.add_client_error(method, code, message or f"{code} (stubbed)", http_status_code=status,
                              expected_params=expected)

    def limits(self, iterator_prefix: str = "") -> list[int]:
        return [p["Limit"] for name, p in self.calls
                if name == "GetRecords" and str(p["ShardIterator"]).startswith(iterator_prefix)]

    def iterator_requests(self) -> list[dict[str, Any]]:
        return [p for name, p in self.calls if name == "GetShardIterator"]


def shard(shard_id: str, first: int, *, end: int | None = None, parents: Sequence[str] = ()) -> dict[str, Any]:
    entry: dict[str, Any] = {"ShardId": shard_id, "HashKeyRange": HASH_ALL,
                             "SequenceNumberRange": {"StartingSequenceNumber": str(first)}}
    if end is not None:
        entry["SequenceNumberRange"]["EndingSequenceNumber"] = str(end)
    for key, parent in zip(("ParentShardId", "AdjacentParentShardId"), parents, strict=False):
        entry[key] = parent
    return entry


def record(sequence: int | str, value: Any, key: str = "k") -> dict[str, Any]:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return {"SequenceNumber": str(sequence), "Data": data, "PartitionKey": key,
            "ApproximateArrivalTimestamp": datetime(2024, 1, 1, tzinfo=UTC)}


def records(first: int, count: int, *, tag: str = "") -> list[dict[str, Any]]:
    return [record(first + i, {"n": first + i, "tag": tag}) for i in range(count)]


# -- the source and the pipeline's side --------------------------------------------------------

@dataclass
class Committed:
    """The test's Checkpoints: positions as the pipeline would have committed them."""

    positions: dict[str, Position] = field(default_factory=dict)
    leases: Leases | None = None

    async def committed(self) -> dict[str, Position]:
        return dict(self.positions)

    async def revoke(self) -> None:
        return None

    async def table_keys(self, columns: Sequence[str], after: Sequence[Any] | None,
                         limit: int) -> list[tuple[Any, ...]]:
        raise AssertionError("a Kinesis source has no use for table keys")


@dataclass
class Stubbed:
    source: KinesisSource
    kinesis: Script


def config_of(**overrides: Any) -> KinesisSourceConfig:
    # gets_per_second and poll_interval make every wait between calls short; discovery only when woken
    settings: dict[str, Any] = {
        "name": "kin", "type": "kinesis", "stream": STREAM, "region": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9", "aws_access_key_id": "AKIDSTUB", "aws_secret_access_key": SECRET,
        "gets_per_second": 1000, "poll_interval": 0.01, "shard_discovery_interval": 3600, "lease_ttl": None,
        "records_per_get": 1000, "metadata_columns": ["shard_id", "sequence_number"], **overrides}
    return KinesisSourceConfig.model_validate(settings)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    made: list[Stubbed] = []

    async def build(*, once: bool = False, max_rows: int = 100_000, **overrides: Any) -> Stubbed:
        config = config_of(**overrides)
        api = KinesisApi(config)
        await api.open()  # the source's real client, as the config makes it
        kinesis = Script(api.client)
        kinesis.activate()
        source = KinesisSource(config, pipeline="p", once=once, max_rows=max_rows, unreachable_after=5.0, api=api)
        made.append(Stubbed(source, kinesis))
        return made[-1]

    yield build
    for stubbed in made:
        await stubbed.source.close()


async def read(source: KinesisSource, checkpoints: Committed,
               until: Callable[[list[Chunk]], bool] | None = None) -> list[Chunk]:
    """Chunks as the pipeline takes them, until `until` holds (or, --once, the source ends)."""
    stop = asyncio.Event()
    taken: list[Chunk] = []
    async with asyncio.timeout(30):
        async for chunk in source.chunks(checkpoints, stop):
            assert chunk.start == checkpoints.positions.get(chunk.partition), "chunks of a partition chain"
            taken.append(chunk)
            checkpoints.positions[chunk.partition] = chunk.end
            await source.acknowledge({chunk.partition: chunk.end})
            if until is not None and until(taken):
                stop.set()
    return taken


def rows(chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
    return [row for chunk in chunks for row in chunk.rows.to_pylist()]


def numbers(chunks: Sequence[Chunk]) -> list[int]:
    return [row["n"] for row in rows(chunks)]


def holding(count: int) -> Callable[[list[Chunk]], bool]:
    return lambda chunks: sum(c.rows.num_rows for c in chunks) >= count


def partition(shard_id: str) -> str:
    return f"{STREAM}:{shard_id}"


# -- throttles -------------------------------------------------------------------------------

async def test_a_throttled_get_records_is_retried_with_a_smaller_limit_then_grows_back(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 3), "it-1")
    k.error("get_records", "ProvisionedThroughputExceededException", {"ShardIterator": "it-1", "Limit": ANY})
    k.error("get_records", "ProvisionedThroughputExceededException", {"ShardIterator": "it-1", "Limit": ANY})
    k.page("it-1", records(4, 3), "it-2")
    k.page("it-2", records(7, 3), "it-3")
    k.page("it-3", records(10, 3), "it-4")
    k.idle.add("it-4")

    chunks = await read(s.source, Committed(), until=holding(12))

    assert numbers(chunks) == list(range(1, 13))  # nothing lost, nothing twice
    assert [r["kinesis_sequence_number"] for r in rows(chunks)] == [str(n) for n in range(1, 13)]
    assert [c.end for c in chunks] == [{"sequence": str(n), "end": False} for n in (3, 6, 9, 12)]
    assert k.limits()[:6] == [1000, 1000, 500, 250, 500, 1000]  # halved per throttle, doubled per success
    assert [p["ShardIteratorType"] for p in k.iterator_requests()] == ["TRIM_HORIZON"]  # the iterator was kept


async def test_a_throttle_never_raises_the_limit_above_records_per_get(make: Any) -> None:
    s = await make(records_per_get=10)
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.error("get_records", "ProvisionedThroughputExceededException", {"ShardIterator": "it-0", "Limit": ANY})
    k.page("it-0", records(1, 3), "it-1")
    k.page("it-1", records(4, 3), "it-2")
    k.idle.add("it-2")

    chunks = await read(s.source, Committed(), until=holding(6))

    assert numbers(chunks) == list(range(1, 7))
    assert k.limits()[0] == 10
    assert all(limit <= 10 for limit in k.limits()), k.limits()
    assert k.limits()[1] < 10


async def test_limit_exceeded_on_get_shard_iterator_is_retried(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.error("get_shard_iterator", "LimitExceededException")
    k.error("get_shard_iterator", "LimitExceededException")
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 4), "it-1")
    k.idle.add("it-1")

    chunks = await read(s.source, Committed(), until=holding(4))

    assert numbers(chunks) == [1, 2, 3, 4]
    assert [p["ShardIteratorType"] for p in k.iterator_requests()] == ["TRIM_HORIZON"] * 3


async def test_limit_exceeded_on_list_shards_is_retried(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.error("list_shards", "LimitExceededException")
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 2), "it-1")
    k.idle.add("it-1")

    chunks = await read(s.source, Committed(), until=holding(2))

    assert numbers(chunks) == [1, 2]


# -- expired iterators -----------------------------------------------------------------------

async def test_an_expired_iterator_is_made_again_after_the_last_sequence_handed_over(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 2), "it-1")
    k.page("it-1", [], "it-2")  # an empty page in between: the last sequence is still 2
    k.error("get_records", "ExpiredIteratorException", {"ShardIterator": "it-2", "Limit": ANY})
    k.iterator("s-0", "again-0", "AFTER_SEQUENCE_NUMBER", after="2")
    k.page("again-0", records(3, 2), "again-1")
    k.error("get_records", "ExpiredIteratorException", {"ShardIterator": "again-1", "Limit": ANY})
    k.iterator("s-0", "again-2", "AFTER_SEQUENCE_NUMBER", after="4")
    k.page("again-2", records(5, 2), "again-3")
    k.idle.add("again-3")

    chunks = await read(s.source, Committed(), until=holding(6))

    assert numbers(chunks) == [1, 2, 3, 4, 5, 6]
    assert [p["ShardIteratorType"] for p in k.iterator_requests()] == [
        "TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]


async def test_an_iterator_expired_before_any_record_is_made_again_from_the_start(make: Any) -> None:
    s = await make(start="latest")
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0", "LATEST")
    k.page("it-0", [], "it-1")
    k.error("get_records", "ExpiredIteratorException", {"ShardIterator": "it-1", "Limit": ANY})
    k.iterator("s-0", "it-2", "LATEST")
    k.page("it-2", records(1, 2), "it-3")
    k.idle.add("it-3")

    chunks = await read(s.source, Committed(), until=holding(2))

    assert numbers(chunks) == [1, 2]
    assert [p["ShardIteratorType"] for p in k.iterator_requests()] == ["LATEST", "LATEST"]


async def test_a_committed_position_resumes_after_it_and_an_expiry_after_the_newest(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0", "AFTER_SEQUENCE_NUMBER", after="99999999999999999999")
    k.page("it-0", [record("100000000000000000000", {"n": 1})], "it-1")
    k.error("get_records", "ExpiredIteratorException", {"ShardIterator": "it-1", "Limit": ANY})
    k.iterator("s-0", "it-2", "AFTER_SEQUENCE_NUMBER", after="100000000000000000000")
    k.page("it-2", [record("100000000000000000001", {"n": 2})], "it-3")
    k.idle.add("it-3")
    committed = Committed({partition("s-0"): {"sequence": "99999999999999999999", "end": False}})

    chunks = await read(s.source, committed, until=holding(2))

    assert numbers(chunks) == [1, 2]
    assert committed.positions[partition("s-0")] == {"sequence": "100000000000000000001", "end": False}


# -- sequence numbers as numbers -------------------------------------------------------------

def test_generations_are_ordered_by_their_starting_sequence_number_as_an_integer() -> None:
    listing = [shard("young", 100), shard("old", 99), shard("oldest", 9), shard("middle", 10)]
    assert [s.shard_id for s in readable(shards_of(STREAM, listing), set())] == ["oldest", "middle", "old", "young"]


async def test_a_closed_family_is_read_parent_first_the_oldest_generation_first(make: Any) -> None:
    """Grandparent (starts at 9) -> parent (starts at 10) -> child (open): as text "10" < "9", so a
    string comparison would read the generations out of order. Each is read only after the one
    before it ends and that end is acknowledged."""
    s = await make()
    k = s.kinesis
    k.listing = [shard("child", 500, parents=["parent"]), shard("parent", 10, end=99, parents=["grand"]),
                 shard("grand", 9, end=9)]
    k.iterator("grand", "g-0")
    k.page("g-0", [record(9, {"n": 1})], "g-1")
    k.page("g-1", [], None)
    k.iterator("parent", "p-0")
    k.page("p-0", [record(10, {"n": 2}), record(11, {"n": 3})], None)
    k.iterator("child", "c-0")
    k.page("c-0", [record(500, {"n": 4})], "c-1")
    k.idle.add("c-1")

    chunks = await read(s.source, Committed(), until=holding(4))

    assert numbers(chunks) == [1, 2, 3, 4]
    assert [c.partition for c in chunks] == [partition(p) for p in ("grand", "grand", "parent", "child")]
    assert [p["ShardId"] for p in k.iterator_requests()] == ["grand", "parent", "child"]
    assert chunks[1].end == {"sequence": "9", "end": True}


async def test_a_child_waits_until_its_parents_end_is_acknowledged(make: Any) -> None:
    """A merge: both parents are read to their ends; the first end handed over is held back
    (handed over, not committed). The source must not ask for the child until it is acknowledged.
    Its discovery after the other end's acknowledgement is awaited as a condition; that nothing
    asks for the child then is a window of 0.1 s (a broken source could only pass it by being
    slow, never fail a correct one)."""
    s = await make()
    k = s.kinesis
    k.listing = [shard("left", 1, end=50), shard("right", 2, end=60), shard("child", 70, parents=["left", "right"])]
    k.iterator("left", "l-0")
    k.page("l-0", [record(3, {"n": 1})], None)
    k.iterator("right", "r-0")
    k.page("r-0", [record(4, {"n": 2})], None)
    k.iterator("child", "c-0")
    k.page("c-0", [record(71, {"n": 3})], "c-1")
    k.idle.add("c-1")
    checkpoints = Committed()
    stop = asyncio.Event()
    taken: list[Chunk] = []
    held: list[Chunk] = []
    both_ended = asyncio.Event()

    async def commit(chunk: Chunk) -> None:
        checkpoints.positions[chunk.partition] = chunk.end
        await s.source.acknowledge({chunk.partition: chunk.end})

    async def pipeline() -> None:
        async for chunk in s.source.chunks(checkpoints, stop):
            taken.append(chunk)
            if finished(chunk) and not held:
                held.append(chunk)
                continue
            await commit(chunk)
            if finished(chunk):
                k.listed.clear()
                both_ended.set()
            if chunk.partition == partition("child"):
                stop.set()

    async with asyncio.timeout(30):
        reading = asyncio.create_task(pipeline())
        await both_ended.wait()
        await k.listed.wait()  # the source looks for readable shards again after that acknowledgement
        await asyncio.sleep(0.1)
        assert "child" not in [p["ShardId"] for p in k.iterator_requests()]
        assert [c.partition for c in taken] in ([partition("left"), partition("right")],
                                                [partition("right"), partition("left")])
        await commit(held.pop())
        await reading

    assert numbers(taken) in ([1, 2, 3], [2, 1, 3])
    assert k.iterator_requests()[-1] == {"StreamName": STREAM, "ShardId": "child", "ShardIteratorType": "TRIM_HORIZON"}


def finished(chunk: Chunk) -> bool:
    return isinstance(chunk.end, dict) and bool(chunk.end.get("end"))


# -- poison and aggregates -------------------------------------------------------------------

async def test_poison_records_become_rejects_naming_shard_and_sequence(make: Any) -> None:
    s = await make(max_record_bytes=64)
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", [record(101, {"n": 1}), record(102, b"not json {"), record(103, {"n": 2, "pad": "x" * 100}),
                    record(104, {"n": 3})], "it-1")
    k.idle.add("it-1")

    chunks = await read(s.source, Committed(), until=holding(2))

    assert numbers(chunks) == [1, 3]
    rejects = {r.position["sequence_number"]: r for c in chunks for r in c.rejects}
    assert sorted(rejects) == ["102", "103"]
    assert all(r.partition == partition("s-0") for r in rejects.values())
    assert "max_record_bytes" in rejects["103"].reason
    assert rejects["102"].payload == "not json {"
    assert chunks[-1].end == {"sequence": "104", "end": False}


async def test_a_kpl_aggregate_is_opened_into_its_user_records(make: Any) -> None:
    aggregator = RecordAggregator()
    for n in range(1, 6):
        assert aggregator.add_user_record(f"key-{n}", json.dumps({"n": n}).encode()) is None
    partition_key, _, data = aggregator.clear_and_get().get_contents()
    s = await make(metadata_columns=["partition_key", "sequence_number", "shard_id"])
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", [record(200, {"n": 0}), record(201, data, key=partition_key), record(202, {"n": 6})], "it-1")
    k.idle.add("it-1")

    chunks = await read(s.source, Committed(), until=holding(7))

    assert numbers(chunks) == list(range(7))
    got = rows(chunks)
    assert [r["kinesis_partition_key"] for r in got[1:6]] == [f"key-{n}" for n in range(1, 6)]
    assert {r["kinesis_sequence_number"] for r in got[1:6]} == {"201"}  # user records share their record's
    assert {r["kinesis_shard_id"] for r in got} == {"s-0"}


# -- refused credentials, missing stream -----------------------------------------------------

@pytest.mark.parametrize("code", ["AccessDeniedException", "UnrecognizedClientException"])
async def test_refused_credentials_are_a_config_error_without_the_secret(make: Any, code: str) -> None:
    s = await make()
    s.kinesis.error("list_shards", code, message=f"The security token included in the request is invalid ({code})")

    with pytest.raises(ConfigError) as caught:
        await read(s.source, Committed())

    message = str(caught.value)
    assert code in message and "credentials" in message
    assert SECRET not in message and SECRET not in repr(caught.value)


async def test_refused_credentials_on_get_records_stop_the_source(make: Any) -> None:
    s = await make()
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.error("get_records", "AccessDeniedException", {"ShardIterator": "it-0", "Limit": ANY},
            message="User is not authorized to perform: kinesis:GetRecords")

    with pytest.raises(ConfigError) as caught:
        await read(s.source, Committed())

    assert "AccessDeniedException" in str(caught.value) and "GetRecords" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_a_missing_stream_is_a_config_error(make: Any) -> None:
    s = await make()
    s.kinesis.error("list_shards", "ResourceNotFoundException",
                    message=f"Stream {STREAM} under account 000000000000 not found.")

    with pytest.raises(ConfigError, match="not found") as caught:
        await read(s.source, Committed())

    assert STREAM in str(caught.value)


# -- --once ----------------------------------------------------------------------------------

async def test_once_ends_when_each_shard_is_caught_up(make: Any) -> None:
    s = await make(once=True)
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 3), "it-1", behind=5000)
    k.page("it-1", records(4, 3), "it-2", behind=0)  # caught up: fewer records than the limit
    checkpoints = Committed()

    chunks = await read(s.source, checkpoints)

    assert numbers(chunks) == [1, 2, 3, 4, 5, 6]
    assert checkpoints.positions == {partition("s-0"): {"sequence": "6", "end": False}}
    assert "it-2" not in [p["ShardIterator"] for name, p in k.calls if name == "GetRecords"]


async def test_once_keeps_reading_a_full_page_even_at_behind_zero(make: Any) -> None:
    s = await make(once=True, records_per_get=3)
    k = s.kinesis
    k.listing = [shard("s-0", 100)]
    k.iterator("s-0", "it-0")
    k.page("it-0", records(1, 3), "it-1", behind=0)  # as many as the limit: there may be more
    k.page("it-1", records(4, 1), "it-2", behind=0)

    chunks = await read(s.source, Committed())

    assert numbers(chunks) == [1, 2, 3, 4]


async def test_once_reads_a_closed_parent_to_its_end_then_its_child(make: Any) -> None:
    s = await make(once=True)
    k = s.kinesis
    k.listing = [shard("parent", 10, end=90), shard("child", 100, parents=["parent"])]
    k.iterator("parent", "p-0")
    k.page("p-0", records(11, 2), "p-1", behind=3000)
    k.page("p-1", [], None, behind=0)
    k.iterator("child", "c-0")
    k.page("c-0", records(101, 2), "c-1", behind=0)
    checkpoints = Committed()

    chunks = await read(s.source, checkpoints)

    assert numbers(chunks) == [11, 12, 101, 102]
    assert checkpoints.positions == {partition("parent"): {"sequence": "12", "end": True},
                                     partition("child"): {"sequence": "102", "end": False}}


async def test_once_reads_a_closed_shard_to_its_end_even_when_a_page_says_caught_up(make: Any) -> None:
    s = await make(once=True)
    k = s.kinesis
    k.listing = [shard("parent", 10, end=90), shard("child", 100, parents=["parent"])]
    k.iterator("parent", "p-0")
    k.page("p-0", records(11, 2), "p-1", behind=0)  # its last records; the end comes with the next call
    k.page("p-1", [], None, behind=0)
    k.iterator("child", "c-0")
    k.page("c-0", records(101, 2), "c-1", behind=0)
    checkpoints = Committed()

    chunks = await read(s.source, checkpoints)

    assert numbers(chunks) == [11, 12, 101, 102]
    assert checkpoints.positions[partition("parent")] == {"sequence": "12", "end": True}


# -- lag ---------------------------------------------------------------------------------------

async def test_lag_per_shard_is_millis_behind_latest_in_seconds_until_the_shard_ends(make: Any) -> None:
    """/status and /metrics show `source.lag()`: per open shard, GetRecords' MillisBehindLatest in
    seconds; a shard read to its end is no longer shown."""
    s = await make(gets_per_second=0.01)  # one GetRecords per shard in this test's time
    k = s.kinesis
    k.listing = [shard("open", 100), shard("closing", 200, end=290)]
    k.iterator("open", "o-0")
    k.page("o-0", records(1, 2), "o-1", behind=7250)
    k.iterator("closing", "c-0")
    k.page("c-0", records(10, 1), None, behind=0)
    seen: list[dict[str, dict[str, float]]] = []

    def both_read(chunks: list[Chunk]) -> bool:
        seen.append(s.source.lag())
        return {c.partition for c in chunks} == {partition("open"), partition("closing")}

    await read(s.source, Committed(), until=both_read)

    assert seen[-1] == {partition("open"): {"seconds": 7.25}}
