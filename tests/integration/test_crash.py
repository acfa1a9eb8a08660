"""Crash safety of the real daemon: SIGKILL it at random moments mid-load, restart it, and check
row by row that nothing was lost or duplicated, that the DLQ holds exactly the malformed lines,
and that the stored positions end at the file sizes.

The daemon runs as an operator runs it (`python -m conduitd run -c FILE`, not --once, so it keeps
polling); the test talks to PostgreSQL only to observe progress and check the outcome.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, write_config
from tests.helpers.syncdb import Db

SEED = 20261126
PIPELINE = "events"


# --------------------------------------------------------------------------------------------
# Helpers: a synchronous view of the database, starting and stopping the daemon
# --------------------------------------------------------------------------------------------


def log_tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def make_config(tmp_path: Path, dsn: str, schema: str, data_dir: Path, **pipeline: Any) -> Path:
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"log_format": "json", "drain_timeout": "30s"},
        "sources": [{"name": "events", "type": "file", "path": str(data_dir / "*.jsonl"), "poll_interval": "0.2s"}],
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn, "schema": schema}],
        "resources": [{"name": PIPELINE, "source": "events", "destination": "pg", "table": "events", **pipeline}],
    })


# --------------------------------------------------------------------------------------------
# Generated input
# --------------------------------------------------------------------------------------------


Row = tuple[int, str, float, datetime, bool, bytes]
"""What the test checks of a record besides its id: seq, name, score, ts, active, meta (canonical JSON)."""


@dataclass
class Dataset:
    files: list[Path]
    records: int = 0
    """How many valid lines were written."""
    last: dict[int, Row] = field(default_factory=dict)
    """Per id, the last record written with it (files in name order, lines in order)."""
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    """(file, byte offset just after the line, line text) of every malformed line."""

    def sizes(self) -> dict[str, int]:
        return {str(f): f.stat().st_size for f in self.files}


_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "ünïcødé", "日本"]


def make_record(rng: random.Random, record_id: int, seq: int) -> dict[str, Any]:
    ts = _BASE_TIME + timedelta(seconds=seq, microseconds=rng.randrange(1, 1_000_000))
    return {
        "id": record_id,
        "seq": seq,
        "name": f"{rng.choice(_WORDS)}-{rng.randrange(10**9)}",
        "score": rng.randrange(1, 10**7) / 1000 + 0.0005,
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "active": rng.random() < 0.5,
        "meta": {"region": rng.choice(["eu", "us", "ap"]), "tries": rng.randrange(100),
                 "tags": [rng.choice(_WORDS) for _ in range(rng.randrange(1, 4))]},
    }


def make_malformed(rng: random.Random, number: int) -> str:
    """A line that is not a JSON object: not JSON at all, a JSON array, a truncated object, a scalar."""
    kind = number % 6
    if kind == 0:
        return f"this is not json #{number} {rng.randrange(10**6)}"
    if kind == 1:
        return f'{{id: {number}, "unquoted": key}}'
    if kind == 2:
        return orjson.dumps([number, "array", {"id": -number}]).decode()
    if kind == 3:
        return orjson.dumps([{"id": -number, "name": "inside an array"}]).decode()
    if kind == 4:
        full = orjson.dumps(make_record(rng, -number, -number)).decode()
        return full[: rng.randrange(5, len(full) - 2)]  # cut before the closing brace: never valid
    return str(number * 1000 + 7)  # a JSON number, not an object


def generate(data_dir: Path, rng: random.Random, *, files: int, records: int, malformed: int,
             next_id: Callable[[int], int]) -> Dataset:
    """`records` valid lines over `files` files with `malformed` bad lines scattered among them.
    `next_id(seq)` gives the id of the seq-th record (unique ids for append, repeats for upsert)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset([data_dir / f"part-{n:02d}.jsonl" for n in range(files)])
    total = records + malformed
    bad_at = set(rng.sample(range(total), malformed))
    per_file = -(-total // files)
    seq = bad = 0
    for index, path in enumerate(dataset.files):
        offset = 0
        lines: list[bytes] = []
        for line_no in range(index * per_file, min(total, (index + 1) * per_file)):
            if line_no in bad_at:
                text = make_malformed(rng, bad)
                bad += 1
                line = text.encode() + b"\n"
                dataset.malformed.append((str(path), offset + len(line), text))
            else:
                record = make_record(rng, next_id(seq), seq)
                seq += 1
                dataset.last[record["id"]] = as_row(record)
                line = orjson.dumps(record) + b"\n"
            lines.append(line)
            offset += len(line)
        path.write_bytes(b"".join(lines))
    assert seq == records and bad == malformed
    dataset.records = records
    return dataset


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def as_row(record: dict[str, Any]) -> Row:
    return (record["seq"], record["name"], record["score"], datetime.fromisoformat(record["ts"]), record["active"],
            canonical(record["meta"]))


def assert_table_holds_the_last_record_per_id(db: Db, dataset: Dataset) -> None:
    """Row by row: the same ids, each once, each with the values of its last record."""
    rows = db.fetch(f"SELECT id, seq, name, score, ts, active, meta::text AS meta FROM {db.table('events')}")
    stored = {r["id"]: (r["seq"], r["name"], r["score"], r["ts"], r["active"], canonical(json.loads(r["meta"])))
              for r in rows}
    assert len(stored) == len(rows), f"{len(rows) - len(stored)} duplicated ids"
    missing = dataset.last.keys() - stored.keys()
    extra = stored.keys() - dataset.last.keys()
    assert not missing and not extra, f"{len(missing)} ids missing (e.g. {sorted(missing)[:5]}), " \
                                      f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]})"
    wrong = [(i, stored[i], row) for i, row in dataset.last.items() if stored[i] != row]
    assert not wrong, f"{len(wrong)} rows differ from their last record, e.g. {wrong[:3]}"


# --------------------------------------------------------------------------------------------
# The crash loop
# --------------------------------------------------------------------------------------------


@dataclass
class Kill:
    after: float
    """Seconds between the first commit seen from this process and the SIGKILL."""
    why: str
    """"sleep" (the random sleep ran out) or "cap" (the cycle's share of the input was committed first)."""
    rows: int
    """Rows in the table right after the kill."""
    progress: int
    """Bytes committed (sum of checkpoint offsets) right after the kill."""


def crash_loop(db: Db, config: Path, log: Path, dataset: Dataset, *, kills: int, max_sleep: float,
               rng: random.Random) -> list[Kill]:
    """`kills` times: start the daemon, wait until this process has committed a batch, then SIGKILL
    it after a random sleep of up to `max_sleep` seconds. So that the kills land mid-load however
    fast the machine is, the k-th process is killed early (after a random few milliseconds more,
    so mid-batch) once the committed input passes k/(kills+1) of the total."""
    total = sum(dataset.sizes().values())
    done: list[Kill] = []
    progress = 0
    for k in range(1, kills + 1):
        sleep = rng.uniform(0, max_sleep)
        jitter = rng.uniform(0, 0.05)
        cap = total * k // (kills + 1)
        proc = start_daemon(config, log)
        try:
            deadline = time.monotonic() + 60
            while (now := sum(db.checkpoints().values())) <= progress and now < total:
                assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log_tail(log)}"
                assert time.monotonic() < deadline, f"no commit within 60s:\n{log_tail(log)}"
                time.sleep(0.005)
            first_commit = time.monotonic()
            why = "sleep"
            while time.monotonic() - first_commit < sleep:
                if sum(db.checkpoints().values()) >= cap:
                    why = "cap"
                    time.sleep(jitter)
                    break
                time.sleep(0.005)
            assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log_tail(log)}"
            proc.send_signal(signal.SIGKILL)
            after = time.monotonic() - first_commit
        finally:
            stop_daemon(proc)
        assert proc.returncode == -signal.SIGKILL
        progress = sum(db.checkpoints().values())
        done.append(Kill(after, why, db.count("events"), progress))
    return done


def finish(db: Db, config: Path, log: Path, dataset: Dataset, *, timeout: float = 90) -> None:
    """Start the daemon once more, let it catch up (checkpoints at the file sizes, row count
    stable over several polls), then SIGTERM it: it must drain and exit 0."""
    sizes = dataset.sizes()
    proc = start_daemon(config, log)
    try:
        deadline = time.monotonic() + timeout
        stable_since: float | None = None
        last = -1
        while True:
            assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log_tail(log)}"
            assert time.monotonic() < deadline, (
                f"not caught up within {timeout}s: {db.checkpoints()} != {sizes}\n{log_tail(log)}")
            rows = db.count("events")
            if db.checkpoints() == sizes and rows == last:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 1.0:  # five polls of the daemon without change
                    break
            else:
                stable_since = None
            last = rows
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 0, f"exit code {code} after SIGTERM:\n{log_tail(log)}"
    finally:
        stop_daemon(proc)


def assert_dlq_is_exactly_the_malformed_lines(db: Db, dataset: Dataset) -> None:
    """As a multiset of (file, offset after the line, payload): each malformed line once, nothing else."""
    rows = db.fetch(f"SELECT pipeline, partition, position::text AS position, rule, payload "
                    f"FROM {db.table('events_dlq')}")
    stored = Counter((r["partition"], json.loads(r["position"])["offset"], r["payload"]) for r in rows)
    expected = Counter(dataset.malformed)
    assert stored == expected, (f"missing from the DLQ: {list((expected - stored).elements())[:5]}; "
                                f"unexpected or duplicated: {list((stored - expected).elements())[:5]}")
    assert {(r["pipeline"], r["rule"]) for r in rows} == {(PIPELINE, "decode")}


def describe(kills: list[Kill], total: int) -> str:
    return "; ".join(f"kill {n}: {k.rows} rows, {k.progress}/{total} bytes, {k.after:.2f}s ({k.why})"
                     for n, k in enumerate(kills, 1))


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

APPEND_FILES = 4
APPEND_RECORDS = 300_000
APPEND_MALFORMED = 50
APPEND_KILLS = 10


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    rng = random.Random(SEED)
    dataset = generate(tmp_path / "data", rng, files=APPEND_FILES, records=APPEND_RECORDS,
                       malformed=APPEND_MALFORMED, next_id=lambda seq: 1_000_000 + seq * 3)
    assert len(dataset.last) == APPEND_RECORDS  # unique ids
    config = make_config(tmp_path, pg_dsn, pg_schema, tmp_path / "data", mode="append",
                         batch={"max_rows": 2000, "max_wait": "0.2s"})
    log = tmp_path / "conduitd.log"

    kills = crash_loop(db, config, log, dataset, kills=APPEND_KILLS, max_sleep=1.5, rng=rng)
    finish(db, config, log, dataset)
    history = describe(kills, sum(dataset.sizes().values()))

    # The kills landed mid-load, so the test cannot pass vacuously.
    mid_load = [k for k in kills if 0 < k.rows < APPEND_RECORDS]
    assert len(mid_load) >= APPEND_KILLS - 2, f"too few kills landed mid-load: {history}"

    total, distinct = db.fetch(f"SELECT count(*), count(DISTINCT id) FROM {db.table('events')}")[0]
    assert (total, distinct) == (APPEND_RECORDS, APPEND_RECORDS), history
    assert_table_holds_the_last_record_per_id(db, dataset)
    assert_dlq_is_exactly_the_malformed_lines(db, dataset)
    assert db.checkpoints() == dataset.sizes()


UPSERT_FILES = 3
UPSERT_RECORDS = 100_000
UPSERT_KEYS = 12_000
UPSERT_MALFORMED = 12
UPSERT_KILLS = 5


@pytest.mark.slow
def test_sigkill_during_upserts_leaves_the_last_value_per_key(
        tmp_path: Path, pg_dsn: str, pg_schema: str, db: Db) -> None:
    rng = random.Random(SEED + 1)
    keys = random.Random(SEED + 2)
    dataset = generate(tmp_path / "data", rng, files=UPSERT_FILES, records=UPSERT_RECORDS,
                       malformed=UPSERT_MALFORMED, next_id=lambda seq: keys.randrange(UPSERT_KEYS))
    assert len(dataset.last) < UPSERT_RECORDS / 4  # plenty of repeated ids, in every batch
    config = make_config(tmp_path, pg_dsn, pg_schema, tmp_path / "data", mode="upsert", unique_key=["id"],
                         batch={"max_rows": 2000, "max_wait": "0.2s"})
    log = tmp_path / "conduitd.log"

    kills = crash_loop(db, config, log, dataset, kills=UPSERT_KILLS, max_sleep=1.0, rng=rng)
    finish(db, config, log, dataset)
    total = sum(dataset.sizes().values())
    history = describe(kills, total)

    mid_load = [k for k in kills if 0 < k.progress < total]
    assert len(mid_load) >= UPSERT_KILLS - 1, f"too few kills landed mid-load: {history}"

    count = db.fetchval(f"SELECT count(*) FROM {db.table('events')}")
    assert count == len(dataset.last), history
    assert_table_holds_the_last_record_per_id(db, dataset)
    assert_dlq_is_exactly_the_malformed_lines(db, dataset)
    assert db.checkpoints() == dataset.sizes()


def is_json_object(text: bytes) -> bool:
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def test_dataset_generator_is_deterministic_and_places_every_malformed_line(tmp_path: Path) -> None:
    """The crash tests rely on the generator: same seed, same bytes; every malformed line sits at
    the recorded offset and is not a JSON object; the valid lines are exactly the recorded rows."""
    first = generate(tmp_path / "a", random.Random(7), files=2, records=300, malformed=12, next_id=lambda s: s)
    second = generate(tmp_path / "b", random.Random(7), files=2, records=300, malformed=12, next_id=lambda s: s)
    assert [f.read_bytes() for f in first.files] == [f.read_bytes() for f in second.files]
    valid: dict[int, Row] = {}
    for path in first.files:
        for text in path.read_bytes().splitlines():
            if is_json_object(text):
                value = orjson.loads(text)
                valid[value["id"]] = as_row(value)
    assert valid == first.last and first.records == 300
    assert len(first.malformed) == 12
    for partition, end, text in first.malformed:
        data = Path(partition).read_bytes()
        line = text.encode() + b"\n"
        assert data[end - len(line):end] == line and (end == len(line) or data[end - len(line) - 1] == 10)
        assert not is_json_object(text.encode())


def test_non_object_lines_go_to_the_dlq_whatever_their_neighbours(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                                 db: Db) -> None:
    """Which lines reach the DLQ must not depend on how the input is cut into blocks: after a crash
    the blocks start at the committed offset, so a neighbour-dependent verdict changes with the
    moment of the kill. Here the same two lines sit in a clean block (a.jsonl) and next to a
    line that is not JSON (b.jsonl)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(b'{"id": 1}\nnull\n{"id": 2}{"id": 3}\n{"id": 4}\n')
    (data / "b.jsonl").write_bytes(b'{"id": 5}\nnull\n{"id": 6}{"id": 7}\nnot json\n{"id": 8}\n')
    config = make_config(tmp_path, pg_dsn, pg_schema, data, mode="append")
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    dlq = sorted((Path(r["partition"]).name, r["payload"])
                 for r in db.fetch(f"SELECT partition, payload FROM {db.table('events_dlq')}"))
    ids = sorted((r["id"] for r in db.fetch(f"SELECT id FROM {db.table('events')}")), key=lambda i: (i is None, i))
    assert (ids, dlq) == ([1, 4, 5, 8], sorted([("a.jsonl", '{"id": 2}{"id": 3}'), ("a.jsonl", "null"),
                                                ("b.jsonl", '{"id": 6}{"id": 7}'), ("b.jsonl", "not json"),
                                                ("b.jsonl", "null")]))
