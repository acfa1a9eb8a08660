"""The `type: kinesis` source's config section. Imports no AWS library.

    sources:
      - name: clicks
        type: kinesis
        stream: clicks                      # a name, an ARN, or a list of them
        region: eu-west-1
        start: trim_horizon                 # latest | at_timestamp (with start_timestamp)
        metadata_columns: [shard_id, sequence_number]

Credentials come from the standard AWS chain (environment, shared files, instance/pod role) unless
`aws_access_key_id`/`aws_secret_access_key` are given, as text or through a credentials provider
(`{from: env, name: ...}`, `{from: file, path: ...}`, a plugin's); they are never shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from conduitd.config import NonEmpty, SourceConfig
from conduitd.core.redact import remember
from conduitd.core.units import ByteSize, PositiveDuration
from conduitd.credentials import SecretText

KinesisMetadata = Literal["partition_key", "sequence_number", "shard_id", "arrival_timestamp", "stream"]


class KinesisSourceConfig(SourceConfig):
    """Kinesis Data Streams read shard by shard, parents before children."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["kinesis"]
    stream: tuple[NonEmpty, ...]
    """A stream name or ARN, or a list of them."""
    region: NonEmpty | None = None
    """The AWS region (else the standard chain's: AWS_REGION, the shared config file)."""
    endpoint_url: NonEmpty | None = None
    """Another endpoint than AWS's (a local server, a VPC endpoint)."""
    aws_access_key_id: SecretText | None = None
    aws_secret_access_key: SecretText | None = None
    aws_session_token: SecretText | None = None
    start: Literal["trim_horizon", "latest", "at_timestamp"] = "trim_horizon"
    """Where a shard with no stored position starts (a shard that opened after the stream was
    first read always starts at its beginning, so resharding never skips records)."""
    start_timestamp: datetime | None = None
    """With `start: at_timestamp`: the first arrival time to read."""
    format: Literal["json", "raw"] = "json"
    """`json`: each record is a JSON object (one row); `raw`: its bytes in a `value` column."""
    metadata_columns: tuple[KinesisMetadata, ...] = ()
    """Added as columns kinesis_partition_key, kinesis_sequence_number (text: it has up to 128
    bits), kinesis_shard_id, kinesis_arrival_timestamp, kinesis_stream."""
    max_record_bytes: ByteSize = 1024 * 1024
    """A larger record goes to the DLQ instead of the table."""
    gets_per_second: float = Field(5.0, gt=0, le=1000)
    """Most GetRecords calls per shard per second (AWS allows 5 per shard, shared by consumers)."""
    records_per_get: int = Field(10_000, gt=0, le=10_000)
    """`Limit` of a GetRecords call; halved after a throttle, grown back after successes."""
    poll_interval: PositiveDuration = 1.0
    """A shard with nothing new is asked again after this long."""
    shard_discovery_interval: PositiveDuration = 10.0
    """How often new shards (after a split or merge) are looked for."""
    lease_ttl: PositiveDuration | None = 30.0
    """Replicas running the same pipeline split the shards through leases in the destination, as the
    database sources split tables. Unset (null): this replica reads every shard."""
    connect_timeout: PositiveDuration = 10.0

    @field_validator("stream", mode="before")
    @classmethod
    def _one_stream_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> KinesisSourceConfig:
        if not self.stream:
            raise ValueError("'stream' needs at least one stream name or ARN")
        names = [stream_name(s) for s in self.stream]
        if len(set(names)) != len(names):
            raise ValueError("'stream' names a stream twice")
        if (self.start == "at_timestamp") != (self.start_timestamp is not None):
            raise ValueError("'start_timestamp' goes with 'start: at_timestamp' (and only with it)")
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("set both 'aws_access_key_id' and 'aws_secret_access_key', or neither "
                             "(the standard AWS chain)")
        remember([s.get_secret_value() for s in (self.aws_secret_access_key, self.aws_session_token) if s is not None])
        return self

    @property
    def stream_names(self) -> tuple[str, ...]:
        return tuple(stream_name(s) for s in self.stream)


def stream_name(stream: str) -> str:
    """`arn:aws:kinesis:region:account:stream/NAME` or NAME -> NAME."""
    return stream.rsplit("/", 1)[-1] if stream.startswith("arn:") else stream
