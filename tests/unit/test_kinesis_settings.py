"""`type: kinesis` sections through the real config loader: streams as a name, a list or an ARN,
`start_timestamp` only with `start: at_timestamp`, both credentials or neither, unknown keys
refused, and the secret key never shown (each test uses a secret of its own: the redaction
registry is process-wide, so a secret remembered by another test would hide a leak)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conduitd.configfile import load_config
from conduitd.core.redact import forget_all
from conduitd.errors import ConfigError
from conduitd.sources.kinesis.settings import KinesisSourceConfig


@pytest.fixture(autouse=True)
def _no_remembered_secrets() -> None:
    """Messages here name `aws_secret_access_key`: a test before this one (in the same worker)
    may have remembered the word `secret` as a password, which would mask it in the message."""
    forget_all()


TEMPLATE = """\
destinations:
  - name: pg
    type: postgres
    dsn: "postgresql://app@db/wh"
    schema: raw
resources:
  - name: ev
    source: kin
    destination: pg
    table: events
sources:
  - name: kin
    type: kinesis
{body}
"""
SOURCE_LINE = 12
"""The line of `- name: kin` in TEMPLATE: errors about the section as a whole point there."""
FIRST_BODY_LINE = 14


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(TEMPLATE.format(body="\n".join(f"    {line}" for line in lines)))
    return path


def kinesis(tmp_path: Path, *lines: str, environ: dict[str, str] | None = None) -> KinesisSourceConfig:
    source = load_config(write(tmp_path, *lines), environ or {}).sources[0]
    assert isinstance(source, KinesisSourceConfig)
    return source


def error_of(tmp_path: Path, *lines: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, *lines), environ or {})
    return str(caught.value)


def new_secret() -> str:
    return f"kin-secret-{uuid.uuid4().hex}"


def test_one_stream_by_name(tmp_path: Path) -> None:
    config = kinesis(tmp_path, "stream: clicks", "region: eu-west-1")
    assert config.stream == ("clicks",) and config.stream_names == ("clicks",)
    assert (config.start, config.format, config.region) == ("trim_horizon", "json", "eu-west-1")
    assert config.aws_access_key_id is None and config.aws_secret_access_key is None  # the standard chain


def test_a_list_of_streams_and_arns(tmp_path: Path) -> None:
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    config = kinesis(tmp_path, f"stream: [clicks, '{arn}']")
    assert config.stream == ("clicks", arn)
    assert config.stream_names == ("clicks", "orders")
    assert kinesis(tmp_path, f"stream: '{arn}'").stream_names == ("orders",)


def test_the_same_stream_twice_is_refused_even_once_as_an_arn(tmp_path: Path) -> None:
    message = error_of(tmp_path, "stream: [orders, 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders']")
    assert f"conduitd.yaml:{SOURCE_LINE}:" in message and "names a stream twice" in message


@pytest.mark.parametrize("stream", ["[]", "''"])
def test_no_stream_is_refused(tmp_path: Path, stream: str) -> None:
    message = error_of(tmp_path, f"stream: {stream}")
    assert "sources[0]" in message and "stream" in message


def test_at_timestamp_takes_its_timestamp(tmp_path: Path) -> None:
    config = kinesis(tmp_path, "stream: s", "start: at_timestamp", "start_timestamp: 2024-03-01T12:00:00Z")
    assert config.start_timestamp == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_at_timestamp_without_a_timestamp_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "stream: s", "start: at_timestamp")
    assert f"conduitd.yaml:{SOURCE_LINE}:" in message and "start_timestamp" in message


def test_a_timestamp_without_at_timestamp_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "stream: s", "start: latest", "start_timestamp: 2024-03-01T12:00:00Z")
    assert "start_timestamp" in message and "at_timestamp" in message


def test_an_access_key_without_its_secret_names_the_missing_key_and_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "stream: s", "aws_access_key_id: AKIAEXAMPLE")
    assert f"conduitd.yaml:{SOURCE_LINE}: sources[0]" in message
    assert "aws_secret_access_key" in message


def test_a_secret_without_its_access_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = new_secret()
    message = error_of(tmp_path, "stream: s", f"aws_secret_access_key: {secret}")
    assert "aws_access_key_id" in message and f"conduitd.yaml:{SOURCE_LINE}:" in message
    assert secret not in message


def test_the_secret_is_never_in_the_repr(tmp_path: Path) -> None:
    secret, token = new_secret(), new_secret()
    config = kinesis(tmp_path, "stream: s", "aws_access_key_id: AKIAEXAMPLE", f"aws_secret_access_key: {secret}",
                     f"aws_session_token: {token}")
    assert config.aws_secret_access_key is not None and config.aws_secret_access_key.get_secret_value() == secret
    assert config.aws_session_token is not None and config.aws_session_token.get_secret_value() == token
    for shown in (repr(config), str(config), config.model_dump_json(), repr(config.model_dump())):
        assert secret not in shown and token not in shown


def test_the_secret_from_the_environment(tmp_path: Path) -> None:
    secret = new_secret()
    config = kinesis(tmp_path, "stream: s", "aws_access_key_id: AKIAEXAMPLE",
                     "aws_secret_access_key: {from: env, name: KIN_SECRET}", environ={"KIN_SECRET": secret})
    assert config.aws_secret_access_key is not None and config.aws_secret_access_key.get_secret_value() == secret
    assert secret not in repr(config)


@pytest.mark.parametrize("bad", [
    "records_per_get: {secret}",          # the secret pasted into the wrong field: echoed back as the bad value
    "aws_session_token: [{secret}]",      # a secret field of the wrong type
    "gets_per_second: 0",                 # an unrelated error in a section that holds the secret
    "stream: [s, s]",                      # an error of the section as a whole
])
def test_the_secret_is_never_in_an_error(tmp_path: Path, bad: str) -> None:
    secret = new_secret()
    lines = ["aws_access_key_id: AKIAEXAMPLE", f"aws_secret_access_key: {secret}", bad.format(secret=secret)]
    if not bad.startswith("stream:"):
        lines.insert(0, "stream: s")
    message = error_of(tmp_path, *lines)
    assert secret not in message, message
    assert secret[-12:] not in message, message


def test_an_unknown_key_is_refused_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, "stream: s", "shard_discovery_intervall: 5s")
    assert f"conduitd.yaml:{FIRST_BODY_LINE + 1}: sources[0].shard_discovery_intervall: unknown key" in message
    assert "shard_discovery_interval" in message.split("unknown key", 1)[1]


@pytest.mark.parametrize(("line", "key"), [
    ("metadata_columns: [shard]", "metadata_columns[0]"),
    ("format: avro", "format"),
    ("start: earliest", "start"),
    ("gets_per_second: 0", "gets_per_second"),
    ("records_per_get: 10001", "records_per_get"),
    ("poll_interval: 0s", "poll_interval"),
])
def test_bad_values_name_their_key(tmp_path: Path, line: str, key: str) -> None:
    message = error_of(tmp_path, "stream: s", line)
    assert f"conduitd.yaml:{FIRST_BODY_LINE + 1}: sources[0].{key}" in message


def test_durations_sizes_and_metadata(tmp_path: Path) -> None:
    config = kinesis(tmp_path, "stream: s", "max_record_bytes: 64KiB", "poll_interval: 250ms",
                     "shard_discovery_interval: 2s", "lease_ttl: null",
                     "metadata_columns: [partition_key, sequence_number, shard_id, arrival_timestamp, stream]")
    assert config.max_record_bytes == 64 * 1024
    assert config.poll_interval == pytest.approx(0.25) and config.shard_discovery_interval == pytest.approx(2.0)
    assert config.lease_ttl is None
    assert config.metadata_columns == ("partition_key", "sequence_number", "shard_id", "arrival_timestamp", "stream")
