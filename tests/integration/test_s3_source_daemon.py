"""The file source on S3 in daemon mode, in process against a local S3 server (moto): objects
are listed on every pass, so a new object is read at the next one; an object read to its end is
not opened again while its listing is unchanged; a replaced object is read again from its start;
an object's last line needs no newline (a PUT is whole)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from typing import Any

import pytest

from conduitd.config import FileSourceConfig
from conduitd.core.records import Chunk
from conduitd.sources.base import FixedCheckpoints
from conduitd.sources.file_objects import OpenObject
from conduitd.sources.files import FileSource
from tests.helpers.s3 import BUCKET, KEY_ID, SECRET, s3_client, s3_endpoint

__all__ = ["s3_endpoint"]  # the fixture, used by name


async def test_daemon_reads_new_objects_and_replaced_ones_and_leaves_read_ones_alone(
        s3_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    s3 = s3_client(s3_endpoint)
    prefix = f"{uuid.uuid4().hex}/"

    def put(name: str, body: bytes) -> None:
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=body)

    put("a.jsonl", b'{"id": 1}\n{"id": 2}\n')
    config = FileSourceConfig.model_validate({
        "name": "s", "type": "file", "path": f"s3://{BUCKET}/{prefix}", "poll_interval": 0.02,
        "partial_line_timeout": 3600,
        "endpoint_url": s3_endpoint, "access_key_id": KEY_ID, "secret_access_key": SECRET})
    src = FileSource(config, once=False, max_rows=1000)
    opened: Counter[str] = Counter()
    stop = asyncio.Event()
    chunks = src.chunks(FixedCheckpoints(), stop)

    async def next_rows() -> tuple[Chunk, list[Any]]:
        chunk = await asyncio.wait_for(anext(chunks), 60)
        while not chunk.rows.num_rows:  # a replaced object's identity, recorded first
            chunk = await asyncio.wait_for(anext(chunks), 60)
        return chunk, chunk.rows.column("id").to_pylist()

    try:
        first, ids = await next_rows()
        assert ids == [1, 2] and first.partition == f"s3://{BUCKET}/{prefix}a.jsonl"
        assert src._objects is not None
        store, real_open = src._objects, src._objects.open

        def counting_open(name: str) -> OpenObject:
            opened[name.rsplit("/", 1)[-1]] += 1
            return real_open(name)

        store.open = counting_open  # type: ignore[method-assign]
        await asyncio.to_thread(put, "b.jsonl", b'{"id": 3}\n')
        chunk, ids = await next_rows()
        assert ids == [3] and chunk.start is None
        # An object is whole once it is listed: a last line without its newline is not held back.
        await asyncio.to_thread(put, "c.jsonl", b'{"id": 4}')
        chunk, ids = await next_rows()
        assert ids == [4]
        assert opened == {"b.jsonl": 1, "c.jsonl": 1}  # a, read to its end and unchanged, was not opened

        await asyncio.to_thread(put, "a.jsonl", b'{"id": 10}\n{"id": 20}\n{"id": 30}\n')
        chunk, ids = await next_rows()
        assert ids == [10, 20, 30] and chunk.partition == first.partition
        assert chunk.end == {"offset": 33, "etag": s3.head_object(Bucket=BUCKET, Key=prefix + "a.jsonl")["ETag"]
                             .strip('"')}
        assert any("was replaced" in r.getMessage() and "ETag" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        with contextlib.suppress(StopAsyncIteration):
            await chunks.aclose()
