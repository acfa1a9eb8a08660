"""Crash safety of the file destination through the real daemon: one `conduitd run` loads the same
JSON lines into a local directory (Parquet) and into an S3 prefix on a local moto server (JSON
lines) at once, is SIGKILLed at seeded random moments while batches are in flight, and a final
`--once` finishes the load. Then every published part, found through the state file
(`_conduitd_state.json`), is read with pyarrow: each input record is in exactly one part, each
malformed line in the DLQ once, and no file of conduitd's that the state does not name is left in
the directory or under the prefix. A second `--once` publishes nothing.

Right after each kill the local directory is checked too: it never shows a finished part the
state does not name, and each part the state names is there (or, in the short window after the
state's rename, still under its temporary name)."""

from __future__ import annotations

import io
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from tests.helpers.daemon import conduitd, start_daemon, stop_daemon, tail, write_config
from tests.integration.test_crash import Dataset, Kill, as_row, canonical, describe, generate
from tests.integration.test_file_destination import s3_endpoint

__all__ = ["s3_endpoint"]  # the moto server fixture, used here by name

SEED = 20261207
FILES = 3
RECORDS = 120_000
MALFORMED = 24
KILLS = 6
BUCKET = "conduitd-test"
"""The bucket the `s3_endpoint` fixture creates."""
STATE = "_conduitd_state.json"
LOCAL, REMOTE = "to_local", "to_s3"
"""The two pipelines (and their tables): the same input to a local directory and to S3."""


# --------------------------------------------------------------------------------------------
# The two destinations seen from outside: their files and their state
# --------------------------------------------------------------------------------------------


class Local:
    """The local directory: its files (relative names) and its state file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.exists() else None


class Remote:
    """The S3 prefix (boto3 against moto): its objects (names relative to the prefix) and state."""

    def __init__(self, endpoint: str, prefix: str) -> None:
        import boto3

        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="no-real-key")
        self.prefix = prefix

    def files(self) -> set[str]:
        """Every object but directory markers (empty `dir/` objects pyarrow's S3 filesystem puts
        when a delete leaves a "directory" empty; they hold nothing)."""
        names: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=self.prefix + "/"):
            names.update(o["Key"][len(self.prefix) + 1:] for o in page.get("Contents", [])
                         if not (o["Key"].endswith("/") and o["Size"] == 0))
        return names

    def read(self, name: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{name}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body


Place = Local | Remote


def state_of(place: Place) -> dict[str, Any]:
    data = place.read(STATE)
    return {} if data is None else dict(orjson.loads(data))


def offsets(state: dict[str, Any], pipeline: str) -> dict[str, int]:
    """The committed byte offset per input file."""
    stored = state.get("checkpoints", {}).get(pipeline, {})
    return {partition: int(c["position"]["offset"]) for partition, c in stored.items()}


def parts(state: dict[str, Any]) -> list[tuple[str, int]]:
    """(name, rows) of every published data part."""
    return [(p["name"], int(p["rows"])) for t in state.get("tables", {}).values() for p in t["parts"]]


def dlq_parts(state: dict[str, Any]) -> list[str]:
    return [name for names in state.get("dlq", {}).values() for name in names]


def temporary(name: str) -> str:
    directory, _, base = name.rpartition("/")
    return f"{directory}/.{base}.tmp"


def assert_local_consistent_after_kill(local: Local, when: str) -> None:
    """The local folder never shows a finished part the state does not name; each named part is
    there, or still under its temporary name (killed between the state's rename and its own)."""
    state = state_of(local)
    named = {n for n, _ in parts(state)} | set(dlq_parts(state))
    present = local.files()
    finished = {f for f in present if not f.rpartition("/")[2].startswith(".") and f != STATE}
    assert finished <= named, f"{when}: parts not published are visible: {sorted(finished - named)[:5]}"
    missing = [n for n in named if n not in present and temporary(n) not in present]
    assert not missing, f"{when}: published parts are gone: {missing[:5]}"


# --------------------------------------------------------------------------------------------
# Reading what was published
# --------------------------------------------------------------------------------------------


def read_part(place: Place, name: str) -> pa.Table:
    data = place.read(name)
    assert data is not None, f"the published part {name} does not exist"
    if name.endswith(".parquet"):
        return pq.read_table(pa.BufferReader(data))
    assert name.endswith(".jsonl"), name
    return pajson.read_json(io.BytesIO(data))


def published_rows(place: Place, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of every published part, each part's row count checked against the state."""
    rows: list[dict[str, Any]] = []
    for name, count in parts(state):
        table = read_part(place, name)
        assert table.num_rows == count, f"{name}: {table.num_rows} rows, the state says {count}"
        rows.extend(table.to_pylist())
    return rows


def comparable(row: dict[str, Any]) -> tuple[Any, ...]:
    """A stored row as the test's `Row` of its record (timestamps as text in JSON lines, nested
    values as JSON text in both formats)."""
    ts = row["ts"]
    ts = ts if not isinstance(ts, str) else as_row({**row, "ts": ts.replace("Z", "+00:00"), "meta": None})[3]
    meta = row["meta"]
    return (row["seq"], row["name"], row["score"], ts, row["active"],
            canonical(orjson.loads(meta) if isinstance(meta, str) else meta))


def assert_each_record_once(place: Place, state: dict[str, Any], dataset: Dataset, what: str) -> None:
    rows = published_rows(place, state)
    ids = Counter(r["id"] for r in rows)
    duplicated = [i for i, n in ids.items() if n > 1]
    missing = dataset.last.keys() - ids.keys()
    extra = ids.keys() - dataset.last.keys()
    assert not duplicated and not missing and not extra, (
        f"{what}: {len(duplicated)} ids duplicated (e.g. {duplicated[:5]}), {len(missing)} missing "
        f"(e.g. {sorted(missing)[:5]}), {len(extra)} unexpected")
    wrong = [(r["id"], comparable(r), dataset.last[r["id"]]) for r in rows if comparable(r) != dataset.last[r["id"]]]
    assert not wrong, f"{what}: {len(wrong)} rows differ from their record, e.g. {wrong[:2]}"


def assert_dlq_is_the_malformed_lines(place: Place, state: dict[str, Any], dataset: Dataset, what: str) -> None:
    entries = [orjson.loads(line) for name in dlq_parts(state)
               for line in (place.read(name) or b"").splitlines() if line.strip()]
    stored = Counter((e["partition"], e["position"]["offset"], e["payload"]) for e in entries)
    expected = Counter(dataset.malformed)
    assert stored == expected, (f"{what}: missing from the DLQ: {list((expected - stored).elements())[:3]}; "
                                f"unexpected or duplicated: {list((stored - expected).elements())[:3]}")


def assert_only_published_files(place: Place, state: dict[str, Any], what: str, *, local: bool) -> None:
    expected = {n for n, _ in parts(state)} | set(dlq_parts(state)) | {STATE}
    if local:
        expected.add(".conduitd.lock")
    present = place.files()
    assert present == expected, (f"{what}: files the state does not name: {sorted(present - expected)[:5]}; "
                                 f"named but absent: {sorted(expected - present)[:5]}")


# --------------------------------------------------------------------------------------------
# The crash loop
# --------------------------------------------------------------------------------------------


def crash_loop(config: Path, log: Path, progress: Callable[[], int], total: int, local: Local, *,
               kills: int, max_sleep: float, rng: random.Random) -> list[Kill]:
    """`kills` times: start the daemon, wait for a commit of this process, SIGKILL it after a
    random sleep of up to `max_sleep` s, or a few random ms after the committed input passes
    k/(kills+1) of the total (so that kills land mid-load however fast the machine is)."""
    done: list[Kill] = []
    committed = progress()
    for k in range(1, kills + 1):
        sleep, jitter, cap = rng.uniform(0, max_sleep), rng.uniform(0, 0.05), total * k // (kills + 1)
        proc = start_daemon(config, log)
        try:
            deadline = time.monotonic() + 60
            while (now := progress()) <= committed and now < total:
                assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{tail(log)}"
                assert time.monotonic() < deadline, f"no commit within 60s:\n{tail(log)}"
                time.sleep(0.01)
            first_commit, why = time.monotonic(), "sleep"
            while time.monotonic() - first_commit < sleep:
                if progress() >= cap:
                    why = "cap"
                    time.sleep(jitter)
                    break
                time.sleep(0.01)
            assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{tail(log)}"
            proc.send_signal(signal.SIGKILL)
            after = time.monotonic() - first_commit
        finally:
            stop_daemon(proc)
        assert proc.returncode == -signal.SIGKILL
        assert_local_consistent_after_kill(local, f"after kill {k}")
        committed = progress()
        done.append(Kill(after, why, sum(n for _, n in parts(state_of(local))), committed))
    return done


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_file_destination_loads_leaves_each_record_in_one_part(
        tmp_path: Path, s3_endpoint: str) -> None:
    rng = random.Random(SEED)
    dataset = generate(tmp_path / "data", rng, files=FILES, records=RECORDS, malformed=MALFORMED,
                       next_id=lambda seq: 5_000_000 + seq * 7)
    assert len(dataset.last) == RECORDS
    local, remote = Local(tmp_path / "out"), Remote(s3_endpoint, f"crash-{tmp_path.name}")
    pattern = str(tmp_path / "data" / "*.jsonl")
    batch = {"max_rows": 2000, "max_wait": "0.2s"}
    config = write_config(tmp_path / "conduitd.yaml", {
        "service": {"log_format": "json", "drain_timeout": "30s"},
        "sources": [{"name": "in_local", "type": "file", "path": pattern, "poll_interval": "0.2s"},
                    {"name": "in_s3", "type": "file", "path": pattern, "poll_interval": "0.2s"}],
        "destinations": [
            {"name": "dir", "type": "file", "path": str(local.root), "format": "parquet"},
            {"name": "bucket", "type": "file", "path": f"s3://{BUCKET}/{remote.prefix}", "format": "jsonl",
             "endpoint_url": s3_endpoint, "region": "us-east-1", "access_key_id": "AKIDLOCAL",
             "secret_access_key": "no-real-key"}],
        "resources": [
            {"name": LOCAL, "source": "in_local", "destination": "dir", "table": LOCAL, "batch": batch},
            {"name": REMOTE, "source": "in_s3", "destination": "bucket", "table": REMOTE, "batch": batch}],
    })
    log = tmp_path / "conduitd.log"
    sizes = dataset.sizes()
    total = 2 * sum(sizes.values())

    def progress() -> int:
        return (sum(offsets(state_of(local), LOCAL).values())
                + sum(offsets(state_of(remote), REMOTE).values()))

    kills = crash_loop(config, log, progress, total, local, kills=KILLS, max_sleep=1.0, rng=rng)
    history = describe(kills, total)
    mid_load = [k for k in kills if 0 < k.progress < total]
    assert len(mid_load) >= KILLS - 1, f"too few kills landed mid-load: {history}"

    done = conduitd("run", "--once", "-c", str(config), timeout=300)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    for place, pipeline, is_local in ((local, LOCAL, True), (remote, REMOTE, False)):
        state = state_of(place)
        what = f"{pipeline} ({history})"
        assert offsets(state, pipeline) == sizes, what
        assert_only_published_files(place, state, what, local=is_local)
        assert_each_record_once(place, state, dataset, what)
        assert_dlq_is_the_malformed_lines(place, state, dataset, what)

    before = {p.__class__.__name__: (state_of(p), p.files()) for p in (local, remote)}
    again = conduitd("run", "--once", "-c", str(config), timeout=120)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
    after = {p.__class__.__name__: (state_of(p), p.files()) for p in (local, remote)}
    for name in before:
        (old_state, old_files), (new_state, new_files) = before[name], after[name]
        assert parts(new_state) == parts(old_state) and dlq_parts(new_state) == dlq_parts(old_state), name
        assert new_files == old_files, name
        assert new_state["checkpoints"] == old_state["checkpoints"], name
