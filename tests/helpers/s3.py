"""A local S3 server for tests: moto's `ThreadedMotoServer` on a free loopback port, one per
test session (per xdist worker), with one bucket, and a boto3 client for the test's own side."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

BUCKET = "conduitd-test"
KEY_ID, SECRET = "AKIDLOCAL", "no-real-key-s3"
"""moto takes any credentials; tests that check a secret stays hidden use their own."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at `endpoint` (boto3 ships no type hints)."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server for the session, with one bucket (`BUCKET`): its http://host:port."""
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
