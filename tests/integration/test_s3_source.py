"""The file source reading S3 objects (issue 12, item 4), end to end through the CLI against a
local S3 server (moto): JSON lines, CSV and Parquet objects under a prefix reach PostgreSQL and
SQLite row by row; a second run reads nothing new, a new object is read by the next run, a
replaced object (another ETag) is read again; a malformed record goes to the DLQ with its object
and offset; the secret key is never shown."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite
from tests.helpers.s3 import BUCKET, free_port, s3_client, s3_endpoint

__all__ = ["s3_endpoint"]  # the fixture, used by name

SECRET = "s3cr3t-Src/Key+" + uuid.uuid4().hex
KEY_ID = "AKIDSOURCETEST"


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def source(endpoint: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": "objects", "type": "file", "path": path, "endpoint_url": endpoint, "region": "us-east-1",
            "access_key_id": KEY_ID, "secret_access_key": SECRET, **extra}


def run_once(tmp_path: Path, db: Db, src: dict[str, Any], table: str = "events") -> str:
    """`conduitd run --once`; its output (which must not show the secret)."""
    config = write_config(tmp_path / "c.yaml", {
        "sources": [src], "destinations": [db.destination],
        "resources": [{"name": table, "source": "objects", "destination": "db", "table": table,
                       "dlq": {"type": "table", "table": f"{table}_dlq"}}],
    })
    result = conduitd("run", "--once", "-c", str(config))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert SECRET not in output and "Traceback" not in output
    return output


def test_objects_under_a_prefix_load_once_each_and_replaced_ones_again(tmp_path: Path, db: Db,
                                                                        s3_endpoint: str) -> None:
    s3 = s3_client(s3_endpoint)
    prefix = f"{uuid.uuid4().hex}/in/"
    jsonl = b'{"id": 1, "name": "ann", "amount": 1.5}\n{"id": 2, "name": "bob", "amount": 2.25}\n' \
            b'{"id": 3, "name": "cy\n{"id": 4, "name": "dee", "amount": 4.0}\n'
    s3.put_object(Bucket=BUCKET, Key=prefix + "a.jsonl", Body=jsonl)
    csv = b"id,name,amount\n5,eve,5.5\n6,fay,6.75\n"
    s3.put_object(Bucket=BUCKET, Key=prefix + "b.csv", Body=csv)
    s3.put_object(Bucket=BUCKET, Key=prefix + "c.parquet", Body=parquet_bytes(
        [{"id": 7, "name": "gus", "amount": 7.0}, {"id": 8, "name": "hal", "amount": None}]))
    s3.put_object(Bucket=BUCKET, Key=prefix + "notes.txt", Body=b"not data\n")  # no format: not read
    s3.put_object(Bucket=BUCKET, Key=f"{prefix.split('/')[0]}/other/x.jsonl", Body=b'{"id": 99}\n')  # elsewhere
    src = source(s3_endpoint, f"s3://{BUCKET}/{prefix}")
    run_once(tmp_path, db, src)

    def rows() -> list[tuple[Any, ...]]:
        return [(int(r["id"]), r["name"], None if r["amount"] is None else float(r["amount"]))
                for r in db.table("events", order="id, name")]

    first = [(1, "ann", 1.5), (2, "bob", 2.25), (4, "dee", 4.0), (5, "eve", 5.5), (6, "fay", 6.75),
             (7, "gus", 7.0), (8, "hal", None)]
    assert rows() == first
    a, b, c = (f"s3://{BUCKET}/{prefix}{name}" for name in ("a.jsonl", "b.csv", "c.parquet"))
    def dead_letters() -> list[dict[str, Any]]:
        return db.rows(f"SELECT * FROM {db.name('events_dlq')}")

    (dead,) = dead_letters()
    broken_end = jsonl.index(b'{"id": 4')
    assert (dead["partition"], json.loads(dead["position"])) == (a, {"offset": broken_end})
    assert dead["payload"] == '{"id": 3, "name": "cy'
    checkpoints = db.checkpoints()
    etags = {k: s3.head_object(Bucket=BUCKET, Key=k.split("/", 3)[3])["ETag"].strip('"') for k in (a, b, c)}
    assert checkpoints == {a: {"offset": len(jsonl), "etag": etags[a]},
                           b: {"offset": len(csv), "etag": etags[b]},
                           c: {"row": 2, "etag": etags[c]}}

    run_once(tmp_path, db, src)  # nothing new
    assert rows() == first and db.checkpoints() == checkpoints and len(dead_letters()) == 1

    s3.put_object(Bucket=BUCKET, Key=prefix + "d.jsonl", Body=b'{"id": 9, "name": "ida", "amount": 9.0}\n')
    run_once(tmp_path, db, src)  # the new object only
    assert rows() == [*first, (9, "ida", 9.0)]

    # Replaced by a longer object: only its ETag tells it from the one read (the offset fits in it).
    replacement = b"id,name,amount\n10,jo,10.0\n11,kim,11.5\n12,lu,12.25\n"
    assert len(replacement) > len(csv)
    s3.put_object(Bucket=BUCKET, Key=prefix + "b.csv", Body=replacement)
    output = run_once(tmp_path, db, src)
    assert "was replaced" in output and "ETag changed" in output
    assert rows() == [*first, (9, "ida", 9.0), (10, "jo", 10.0), (11, "kim", 11.5), (12, "lu", 12.25)]
    assert db.checkpoints()[b]["etag"] == s3.head_object(Bucket=BUCKET, Key=prefix + "b.csv")["ETag"].strip('"')


def test_a_glob_reads_only_the_matching_keys_and_one_object_by_name(tmp_path: Path, s3_endpoint: str) -> None:
    db = sqlite(tmp_path)
    s3 = s3_client(s3_endpoint)
    top = uuid.uuid4().hex
    for key, body in (("x/a.jsonl", b'{"id": 1}\n'), ("x/b.jsonl", b'{"id": 2}\n'), ("x/c.csv", b"id\n3\n"),
                      ("x/sub/d.jsonl", b'{"id": 4}\n'), ("y/e.jsonl", b'{"id": 5}\n')):
        s3.put_object(Bucket=BUCKET, Key=f"{top}/{key}", Body=body)
    run_once(tmp_path, db, source(s3_endpoint, f"s3://{BUCKET}/{top}/x/*.jsonl"))
    assert [r["id"] for r in db.table("events")] == [1, 2]
    run_once(tmp_path, db, source(s3_endpoint, f"s3://{BUCKET}/{top}/y/e.jsonl"))
    assert [r["id"] for r in db.table("events")] == [1, 2, 5]


@pytest.mark.parametrize("case", ["missing bucket", "missing object", "unreachable"])
def test_s3_problems_fail_the_run_with_a_message_and_never_the_secret(tmp_path: Path, s3_endpoint: str,
                                                                      case: str) -> None:
    path, endpoint = {
        "missing bucket": (f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/in/", s3_endpoint),
        "missing object": (f"s3://{BUCKET}/{uuid.uuid4().hex}/none.jsonl", s3_endpoint),
        "unreachable": (f"s3://{BUCKET}/in/", f"http://127.0.0.1:{free_port()}"),
    }[case]
    db = sqlite(tmp_path)
    config = write_config(tmp_path / "c.yaml", {
        "sources": [source(endpoint, path)], "destinations": [db.destination],
        "resources": [{"name": "events", "source": "objects", "destination": "db", "table": "events"}],
    })
    result = conduitd("run", "--once", "-c", str(config), "--skip-preflight", timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode in (2, 5), output[-3000:]
    assert SECRET not in output and "Traceback" not in output
    assert {"missing bucket": "does not exist", "missing object": "no object",
            "unreachable": "cannot list"}[case] in output
