"""Resharding under load (issue 11, "How it must be shown", second bullet): a split and a merge
(and, apart, an UpdateShardCount) while records with per-key sequence counters are put, read by the
real `conduitd` command into PostgreSQL: every key's rows arrive in order, exactly once.

The order of arrival is observed in the destination itself: the test creates the table with an
extra `ord bigserial` column before the daemon starts; conduitd's COPY names its columns, so `ord`
takes its default, in the order the rows were written. For each key, `ord` must grow with `n`.
Records are put with `put_ordered` (botocore; each key's records land in the stream in their order)
and the shards each record landed in are checked, so a run that did not cross a reshard fails too.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import kinesis as K
from tests.helpers.daemon import conduitd, messages, start_daemon, stop_daemon, tail, write_config

KEYS = 50
PER_PHASE = 5
"""Records of each key put in one phase (between two reshards)."""
PIPELINE = "events"


def config(path: Path, endpoint: str, stream: str, dsn: str, schema: str, **reading: Any) -> Path:
    return write_config(path, {
        "service": {"log_format": "json"},
        "sources": [{"name": "kin", "type": "kinesis", "stream": stream, "region": "us-east-1",
                     "endpoint_url": endpoint, "aws_access_key_id": "AKIDLOCAL", "aws_secret_access_key": "no-real-key",
                     "metadata_columns": ["shard_id", "sequence_number"], "gets_per_second": 20,
                     "poll_interval": "0.2s", "shard_discovery_interval": "1s", **reading}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": PIPELINE, "source": "kin", "destination": "pg", "table": "events", "mode": "append",
                       "batch": {"max_rows": 100, "max_wait": "0.2s"}}],
    })


def create_table(db: Any) -> None:
    """The destination table with `ord` first: filled by its default, in the order rows are written."""
    db.fetch(f"CREATE TABLE {db.table('events')} (ord bigserial PRIMARY KEY, key text, n bigint, "
             "kinesis_shard_id text, kinesis_sequence_number text)")


def phase(number: int) -> list[dict[str, Any]]:
    """Each key's records number*PER_PHASE .. (number+1)*PER_PHASE-1, keys interleaved."""
    return [{"key": f"k{k:02d}", "n": n} for n in range(number * PER_PHASE, (number + 1) * PER_PHASE)
            for k in range(KEYS)]


def put(kinesis: K.KinesisClient, stream: str, records: Sequence[dict[str, Any]],
        placed: dict[tuple[str, int], tuple[str, str]]) -> None:
    for record, where in zip(records, K.put_ordered(kinesis, stream, records, lambda r: r["key"]), strict=True):
        placed[(record["key"], record["n"])] = where


def wait_for(what: str, condition: Callable[[], bool], within: float, proc: Any = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the daemon exited with {proc.returncode} while waiting for {what}:\n"
                        f"{tail(log) if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}:\n{tail(log) if log else ''}")
        time.sleep(0.1)


def check_rows(db: Any, placed: dict[tuple[str, int], tuple[str, str]]) -> dict[str, list[str]]:
    """Every record exactly once, in the shard and at the sequence number it was put at, each key's
    rows written in the order of their counters; returns key -> the shards its rows came from."""
    rows = db.fetch(f"SELECT ord, key, n, kinesis_shard_id, kinesis_sequence_number FROM {db.table('events')} "
                    "ORDER BY ord")
    assert all(r["ord"] is not None for r in rows)
    seen = [(r["key"], r["n"]) for r in rows]
    assert len(seen) == len(set(seen)), "a record was written twice"
    assert set(seen) == set(placed), f"missing: {sorted(set(placed) - set(seen))[:10]}"
    by_key: dict[str, list[int]] = defaultdict(list)
    shards_of_key: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        assert (r["kinesis_shard_id"], r["kinesis_sequence_number"]) == placed[(r["key"], r["n"])]
        by_key[r["key"]].append(r["n"])  # in ord order
        if not shards_of_key[r["key"]] or shards_of_key[r["key"]][-1] != r["kinesis_shard_id"]:
            shards_of_key[r["key"]].append(r["kinesis_shard_id"])
    for key, counters in by_key.items():
        assert counters == sorted(counters), f"{key}'s rows were written out of order: {counters}"
    return shards_of_key


def check_checkpoints(db: Any, kinesis: K.KinesisClient, stream: str,
                      placed: dict[tuple[str, int], tuple[str, str]]) -> None:
    """Each shard's position is its last record; every closed shard is committed to its end."""
    stored = {r["partition"]: json.loads(r["position"]) for r in db.fetch(
        f"SELECT partition, position::text FROM {db.table('conduitd_checkpoints')} WHERE pipeline = $1", PIPELINE)}
    for shard in K.shards(kinesis, stream):
        sequences = [int(seq) for s, seq in placed.values() if s == shard["ShardId"]]
        position = stored.get(f"{stream}:{shard['ShardId']}")
        if not sequences and position is None:
            continue
        assert position is not None, f"{shard['ShardId']} has no checkpoint"
        if sequences:
            assert int(position["sequence"]) == max(sequences), (shard["ShardId"], position)
        assert position["end"] is not K.is_open(shard), (shard["ShardId"], position)


def adjacent_open_pair(kinesis: K.KinesisClient, stream: str) -> tuple[str, str]:
    """Two open shards whose hash key ranges touch, the lower first."""
    ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"])
                    for s in K.shards(kinesis, stream) if K.is_open(s))
    for (_, end, lower), (start, _, upper) in itertools.pairwise(ranges):
        if start == end + 1:
            return lower, upper
    raise AssertionError(f"no adjacent open shards in {ranges}")


def test_split_and_merge_while_the_daemon_reads_keep_each_keys_order(
        kinesis_endpoint: str, new_stream: Callable[[str, int], str], tmp_path: Path, db: Any, pg_dsn: str,
        pg_schema: str) -> None:
    """A daemon reads a 2-shard stream while 50 keys' counters are put in four phases: a split of
    one shard, then a merge of two adjacent open shards, then an UpdateShardCount to 4 between
    them. Every record arrives once, each key's in counter order, in the shard it was put in."""
    kinesis = K.client(kinesis_endpoint)
    stream = new_stream("reshard", 2)
    create_table(db)
    # The daemon reads slower than the records are put (at most 50 a second a shard): a parent
    # still has records to read when its children get theirs, so reading them early would show.
    path = config(tmp_path / "c.yaml", kinesis_endpoint, stream, pg_dsn, pg_schema,
                  records_per_get=10, gets_per_second=5)
    log = tmp_path / "daemon.log"
    placed: dict[tuple[str, int], tuple[str, str]] = {}
    proc = start_daemon(path, log)
    try:
        put(kinesis, stream, phase(0), placed)
        # The daemon has its shards before the first reshard: the split lands mid-load.
        wait_for("the first rows", lambda: db.count() > 0, 60, proc, log)
        K.split(kinesis, stream, K.open_shard_ids(kinesis, stream)[0])
        put(kinesis, stream, phase(1), placed)
        K.merge(kinesis, stream, *adjacent_open_pair(kinesis, stream))
        put(kinesis, stream, phase(2), placed)
        K.update_shard_count(kinesis, stream, 4)
        put(kinesis, stream, phase(3), placed)
        wait_for(f"{len(placed)} rows", lambda: db.count() >= len(placed), 120, proc, log)
        time.sleep(0.5)  # a duplicate written after the last record would show in the checks below
        stop_daemon_cleanly(proc, log)
    finally:
        stop_daemon(proc)

    shards_of_key = check_rows(db, placed)
    # The load crossed every reshard: keys whose rows came from three or more shards in turn.
    assert len(K.shards(kinesis, stream)) >= 2 + 2 + 1 + 4
    assert max(len(s) for s in shards_of_key.values()) >= 3, shards_of_key
    check_checkpoints(db, kinesis, stream, placed)
    problems = [m for m in messages(log) if "Traceback" in m or "no longer" in m or "error" in m.lower()]
    assert not problems, problems[:5]
    check_table_kept(db)


def stop_daemon_cleanly(proc: Any, log: Path) -> None:
    proc.terminate()
    assert proc.wait(timeout=60) == 0, tail(log)


def test_once_reads_closed_parents_before_their_children(
        kinesis_endpoint: str, new_stream: Callable[[str, int], str], tmp_path: Path, db: Any, pg_dsn: str,
        pg_schema: str) -> None:
    """Every record put before the run, across a split and a merge: `--once` reads the shards
    closed before it started too, each parent before its children, and exits 0."""
    kinesis = K.client(kinesis_endpoint)
    stream = new_stream("reshard-once", 2)
    create_table(db)
    placed: dict[tuple[str, int], tuple[str, str]] = {}
    put(kinesis, stream, phase(0), placed)
    K.split(kinesis, stream, K.open_shard_ids(kinesis, stream)[0])
    put(kinesis, stream, phase(1), placed)
    K.merge(kinesis, stream, *adjacent_open_pair(kinesis, stream))
    put(kinesis, stream, phase(2), placed)
    path = config(tmp_path / "c.yaml", kinesis_endpoint, stream, pg_dsn, pg_schema)
    done = conduitd("--once", "-c", str(path), timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    shards_of_key = check_rows(db, placed)
    assert max(len(s) for s in shards_of_key.values()) >= 3, shards_of_key
    check_checkpoints(db, kinesis, stream, placed)
    again = conduitd("--once", "-c", str(path), timeout=180)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert db.count() == len(placed)
    check_table_kept(db)


def check_table_kept(db: Any) -> None:
    """conduitd left the test's extra column as it was (it only writes the columns it has)."""
    columns = db.fetch("SELECT column_name, column_default FROM information_schema.columns "
                       "WHERE table_schema = $1 AND table_name = 'events' ORDER BY ordinal_position", db.schema)
    assert columns[0]["column_name"] == "ord" and "nextval" in columns[0]["column_default"], columns
    assert db.fetchval(f"SELECT count(DISTINCT ord) FROM {db.table('events')}") == db.count()
