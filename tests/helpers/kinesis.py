"""Kinesis test helpers: a private kinesis-local server, streams, resharding, and an independent
producer and reader (botocore, not the daemon's aiobotocore path).

kinesis-local 0.6.2 (npm; the kinesis-mock engine LocalStack uses) implements split, merge,
UpdateShardCount, ChildShards and ShardFilter. It is slow to write to (PutRecords slows as a shard
grows): size tests to thousands of records, not millions. It neither throttles nor expires
iterators; test those with botocore's Stubber.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

KINESIS_LOCAL_VERSION = "0.6.2"
MAX_RECORDS_PER_PUT = 500  # the PutRecords limit
MAX_BYTES_PER_PUT = 4 * 1024 * 1024  # under the 5 MiB PutRecords limit, with room for keys
ACTIVE_TIMEOUT = 30.0

# Stream creation, deletion and resharding complete at once (the server's default is 500 ms each).
INSTANT = {name: "0ms" for name in (
    "CREATE_STREAM_DURATION", "DELETE_STREAM_DURATION", "SPLIT_SHARD_DURATION", "MERGE_SHARDS_DURATION",
    "UPDATE_SHARD_COUNT_DURATION", "UPDATE_STREAM_MODE_DURATION", "REGISTER_STREAM_CONSUMER_DURATION",
    "DEREGISTER_STREAM_CONSUMER_DURATION", "START_STREAM_ENCRYPTION_DURATION", "STOP_STREAM_ENCRYPTION_DURATION")}

# A botocore Kinesis client: botocore ships no type hints.
KinesisClient = Any
Shard = dict[str, Any]
"""One ListShards entry: ShardId, ParentShardId / AdjacentParentShardId (when it has parents),
HashKeyRange, SequenceNumberRange (EndingSequenceNumber once the shard is closed)."""


@dataclass
class KinesisLocal:
    """A kinesis-local server this process started, serving plain HTTP on 127.0.0.1:port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def services_dir() -> Path:
    """Where scripts/services.sh keeps installed servers: $CONDUITD_SERVICES_DIR or .services."""
    given = os.environ.get("CONDUITD_SERVICES_DIR")
    return Path(given) if given else Path(__file__).resolve().parents[2] / ".services"


def kinesis_local_package() -> Path:
    """The kinesis-local package folder, installed from the npm registry when missing."""
    prefix = services_dir() / "kinesis"
    package = prefix / "node_modules" / "kinesis-local"
    manifest = package / "package.json"
    if not manifest.exists() or orjson.loads(manifest.read_bytes()).get("version") != KINESIS_LOCAL_VERSION:
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
                        f"kinesis-local@{KINESIS_LOCAL_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_kinesis_local(port: int | None = None, timeout: float = 20.0) -> KinesisLocal:
    """Start kinesis-local (in memory, instant resharding) and wait until it answers ListStreams."""
    package = kinesis_local_package()
    port = port or free_port()
    env = {key: value for key, value in os.environ.items() if key != "INITIALIZE_STREAMS"}
    env.update(INSTANT, KINESIS_MOCK_PLAIN_PORT=str(port), KINESIS_MOCK_TLS_PORT=str(free_port()),
               AWS_REGION="us-east-1", AWS_ACCOUNT_ID="000000000000", LOG_LEVEL="WARN",
               SHOULD_PERSIST_DATA="false", LOAD_DATA_IF_EXISTS="false", SHARD_LIMIT="100000",
               # SIGTERM otherwise waits 30 s for clients' keep-alive connections to close.
               CATS_EFFECT_SHUTDOWN_HOOK_TIMEOUT="1s")
    # Run from the package folder: the server reads its TLS certificate (server.json) relative to it.
    process = subprocess.Popen(["node", "main.js"], cwd=package, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = KinesisLocal(process, port)
    probe = client(server.endpoint, timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            probe.list_streams()
            return server
        except Exception:  # noqa: BLE001 - not up yet: connection refused or a half-started server
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"kinesis-local did not answer on port {port}")


_session_server: KinesisLocal | None = None


def kinesis_endpoint() -> str:
    """$CONDUITD_TEST_KINESIS (the server scripts/services.sh started), else a server of this
    process's own, started on first use and stopped when the process exits."""
    global _session_server
    given = os.environ.get("CONDUITD_TEST_KINESIS")
    if given:
        return given
    if _session_server is None:
        _session_server = start_kinesis_local()
        atexit.register(_session_server.stop)
    return _session_server.endpoint


def client(endpoint: str, timeout: float = 30.0) -> KinesisClient:
    """A botocore Kinesis client for `endpoint`, with test credentials and no retries of its own."""
    import botocore.config
    import botocore.session

    config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                    retries={"max_attempts": 1, "mode": "standard"})
    return botocore.session.get_session().create_client(
        "kinesis", region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id="test", aws_secret_access_key="test", config=config)


def new_stream_name(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_active(kinesis: KinesisClient, stream: str, timeout: float = ACTIVE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {stream} is {status}, not ACTIVE, after {timeout} s")
        time.sleep(0.02)


def create_stream(kinesis: KinesisClient, name: str, shards: int) -> None:
    """Create a provisioned stream of `shards` shards and wait until it is ACTIVE."""
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_active(kinesis, name)


def delete_stream(kinesis: KinesisClient, name: str, timeout: float = ACTIVE_TIMEOUT) -> None:
    """Delete the stream (and its consumers) and wait until the server no longer knows it."""
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kinesis.describe_stream_summary(StreamName=name)
        except kinesis.exceptions.ResourceNotFoundException:
            return
        time.sleep(0.02)
    raise TimeoutError(f"stream {name} still exists after {timeout} s")


def shards(kinesis: KinesisClient, stream: str) -> list[Shard]:
    """Every shard of the stream, open and closed (ListShards, all pages), in the server's order."""
    found: list[Shard] = []
    page = kinesis.list_shards(StreamName=stream)
    while True:
        found.extend(page["Shards"])
        token = page.get("NextToken")
        if not token:
            return found
        page = kinesis.list_shards(NextToken=token)


def is_open(shard: Shard) -> bool:
    return "EndingSequenceNumber" not in shard["SequenceNumberRange"]


def open_shard_ids(kinesis: KinesisClient, stream: str) -> list[str]:
    return [shard["ShardId"] for shard in shards(kinesis, stream) if is_open(shard)]


def _reshard(kinesis: KinesisClient, stream: str, change: Callable[[], object]) -> list[str]:
    """Run `change`, wait until the stream is ACTIVE again, return the ids of the shards it added."""
    before = {shard["ShardId"] for shard in shards(kinesis, stream)}
    change()
    wait_active(kinesis, stream)
    return [shard["ShardId"] for shard in shards(kinesis, stream) if shard["ShardId"] not in before]


def split(kinesis: KinesisClient, stream: str, shard_id: str) -> list[str]:
    """Split an open shard at the middle of its hash key range; the two children's ids."""
    [shard] = [s for s in shards(kinesis, stream) if s["ShardId"] == shard_id]
    start, end = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    if end <= start:
        raise ValueError(f"shard {shard_id} holds a single hash key: it cannot be split")
    middle = (start + end) // 2 + 1  # the upper child starts here: start < middle <= end
    return _reshard(kinesis, stream, lambda: kinesis.split_shard(
        StreamName=stream, ShardToSplit=shard_id, NewStartingHashKey=str(middle)))


def merge(kinesis: KinesisClient, stream: str, shard_a: str, shard_b: str) -> list[str]:
    """Merge two open shards with adjacent hash key ranges; the merged child's id."""
    return _reshard(kinesis, stream, lambda: kinesis.merge_shards(
        StreamName=stream, ShardToMerge=shard_a, AdjacentShardToMerge=shard_b))


def update_shard_count(kinesis: KinesisClient, stream: str, count: int) -> list[str]:
    """UpdateShardCount (UNIFORM_SCALING) to `count` open shards; the ids of the shards it added."""
    return _reshard(kinesis, stream, lambda: kinesis.update_shard_count(
        StreamName=stream, TargetShardCount=count, ScalingType="UNIFORM_SCALING"))


def _batches(entries: Sequence[dict[str, Any]]) -> Iterator[range]:
    """Index ranges of at most 500 entries and MAX_BYTES_PER_PUT bytes each."""
    start, size = 0, 0
    for index, entry in enumerate(entries):
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"])
        if index > start and (index - start == MAX_RECORDS_PER_PUT or size + entry_size > MAX_BYTES_PER_PUT):
            yield range(start, index)
            start, size = index, 0
        size += entry_size
    if start < len(entries):
        yield range(start, len(entries))


def _put_entries(kinesis: KinesisClient, stream: str, entries: Sequence[dict[str, Any]],
                 indexes: Sequence[int], results: list[tuple[str, str] | None], attempts: int = 20) -> None:
    """PutRecords for entries[indexes] (one request's worth), re-sending the failed ones (in their
    order) until every one has a (shard id, sequence number) in results."""
    pending = list(indexes)
    for attempt in range(attempts):
        answer = kinesis.put_records(StreamName=stream, Records=[entries[i] for i in pending])
        failed = []
        for index, outcome in zip(pending, answer["Records"], strict=True):
            if "ErrorCode" in outcome:
                failed.append(index)
            else:
                results[index] = (outcome["ShardId"], outcome["SequenceNumber"])
        if not failed:
            return
        pending = failed
        time.sleep(min(0.05 * 2**attempt, 1.0))
    raise RuntimeError(f"{len(pending)} records still failing after {attempts} PutRecords attempts")


def _entry(record: dict[str, Any], partition_key: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    return {"Data": orjson.dumps(record), "PartitionKey": partition_key(record)}


def put_json(kinesis: KinesisClient, stream: str, records: Sequence[dict[str, Any]],
             partition_key: Callable[[dict[str, Any]], str]) -> list[tuple[str, str]]:
    """Put each record as JSON with PutRecords (500 a request); (shard id, sequence number) per
    record, in the records' order. Failed entries are re-sent after the rest of their request
    succeeded, so a retry can put a record behind a later one of the same key: use put_ordered
    where per-key order matters."""
    entries = [_entry(record, partition_key) for record in records]
    results: list[tuple[str, str] | None] = [None] * len(entries)
    for batch in _batches(entries):
        _put_entries(kinesis, stream, entries, batch, results)
    return [result for result in results if result is not None]


def put_ordered(kinesis: KinesisClient, stream: str, records: Sequence[dict[str, Any]],
                partition_key: Callable[[dict[str, Any]], str]) -> list[tuple[str, str]]:
    """Like put_json, but every key's records land in the stream in their order, retries included:
    a PutRecords request carries at most one record of each key (AWS does not promise order within
    one request), and a key's next record is sent only once the previous one succeeded. As fast as
    put_json with hundreds of keys or more; with a single key, one record a request."""
    entries = [_entry(record, partition_key) for record in records]
    queues: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        queues.setdefault(entry["PartitionKey"], []).append(index)
    for queue in queues.values():
        queue.reverse()  # pop() from the end takes the key's next record
    results: list[tuple[str, str] | None] = [None] * len(entries)
    while queues:
        heads = [queue[-1] for queue in queues.values()]
        for batch in _batches([entries[i] for i in heads]):
            _put_entries(kinesis, stream, entries, [heads[i] for i in batch], results)
        for key in list(queues):
            queues[key].pop()
            if not queues[key]:
                del queues[key]
    return [result for result in results if result is not None]


def _parents_first(all_shards: Sequence[Shard]) -> list[Shard]:
    """The shards with every parent before its children (reading in this order keeps each key's
    records in order across splits and merges)."""
    by_id = {shard["ShardId"]: shard for shard in all_shards}
    ordered: list[Shard] = []
    placed: set[str] = set()

    def place(shard: Shard) -> None:
        if shard["ShardId"] in placed:
            return
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent in by_id:
                place(by_id[parent])
        placed.add(shard["ShardId"])
        ordered.append(shard)

    for shard in all_shards:
        place(shard)
    return ordered


def read_shard(kinesis: KinesisClient, stream: str, shard_id: str, closed: bool) -> list[dict[str, Any]]:
    """Every record of one shard from TRIM_HORIZON: until the answer without a next iterator for a
    closed shard, until an empty answer with MillisBehindLatest 0 (caught up) for an open one."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    found: list[dict[str, Any]] = []
    while iterator:
        answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        for record in answer["Records"]:
            found.append({"shard_id": shard_id, "sequence_number": record["SequenceNumber"],
                          "partition_key": record["PartitionKey"], "data": record["Data"],
                          "arrival": record.get("ApproximateArrivalTimestamp")})
        if not closed and not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
            break
        iterator = answer.get("NextShardIterator")
    return found


def drain(kinesis: KinesisClient, stream: str) -> list[dict[str, Any]]:
    """Every record in the stream, read-only (no checkpoints), parents' shards before children's,
    each shard in sequence order. A record: shard_id, sequence_number, partition_key, data (bytes),
    arrival (datetime)."""
    return [record for shard in _parents_first(shards(kinesis, stream))
            for record in read_shard(kinesis, stream, shard["ShardId"], closed=not is_open(shard))]


def values(records: Sequence[dict[str, Any]]) -> list[Any]:
    """The JSON values of drained records, in order."""
    return [orjson.loads(record["data"]) for record in records]
