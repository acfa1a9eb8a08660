"""The configuration as frozen pydantic models; `configfile.load_config` builds them from YAML.

The shape follows the seed tool (Conduit Core): named `sources` and `destinations`, and
`resources` that bind one source to one destination (a resource is a *pipeline*), plus
`service` for the daemon itself. Every model forbids unknown keys.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from conduitd.alertsettings import AlertsConfig
from conduitd.apisettings import ApiConfig
from conduitd.batchsettings import BatchConfig as BatchConfig
from conduitd.configmodel import NonEmpty as NonEmpty
from conduitd.configmodel import StrictModel
from conduitd.core.dsn import ConnectParams, DsnError, parse_dsn
from conduitd.core.quality import QualityCheck
from conduitd.core.redact import remember
from conduitd.core.transcode import codec_name
from conduitd.core.units import ByteSize, Duration, PositiveDuration
from conduitd.credentials import Fetched, SecretText
from conduitd.dbtsettings import AfterCommitConfig
from conduitd.retrysettings import RetryConfig
from conduitd.s3settings import S3Settings, settings_problem

_NAME = r"^[A-Za-z0-9_.\-]+$"
CSV_NULL_VALUES = ("", "NULL", "N/A", "NaN")
"""CSV values a file source reads as null unless `null_values` says otherwise (the seed tool's)."""
Identifier = Annotated[str, StringConstraints(min_length=1)]
"""A schema, table or column name: not empty (NUL is refused for every string)."""
ClientValue = Annotated[str | int | float | bool, Fetched]
"""A librdkafka property's value; a secret may be `{from: env|file|<provider>, ...}` instead."""
_SECRET_PROPERTY = re.compile(r"password|passwd|secret|token|credential|\.pem$|^sasl\.oauthbearer\.config$")


def _check_brokers(brokers: str | None) -> str | None:
    """`host:port[,host:port...]` (a `scheme://` prefix allowed): every port from 1 to 65535."""
    for broker in (brokers or "").split(","):
        address = broker.strip().split("://", 1)[-1]
        if not address:
            raise ValueError("an empty broker address in the list")
        host, colon, port = address.rpartition(":")
        if colon and not host.endswith("]") and ":" in host:
            continue  # a bare IPv6 address without a port
        if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError("a broker port must be a number from 1 to 65535")
    return brokers


def client_secrets(client: dict[str, str | int | float | bool]) -> list[str]:
    """Values of librdkafka properties that are secrets (sasl.password, ssl.key.password, ...)."""
    return [str(v) for k, v in client.items() if _SECRET_PROPERTY.search(k.lower())]


class ServiceConfig(StrictModel):
    """Settings of the daemon process itself."""

    health_port: int | None = Field(None, ge=0, le=65535)
    """Port of the HTTP server (/livez, /readyz, /status, /metrics); 0 picks a free port; unset: no server."""
    health_host: NonEmpty = "127.0.0.1"
    """Address the HTTP server binds; use 0.0.0.0 in a container so probes can reach it."""
    log_format: Literal["json", "text"] = "text"
    """`json` for one JSON object per line (log shippers), `text` for people."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drain_timeout: Duration = 30.0
    """On SIGTERM/SIGINT, how long queued work may take to commit before the process gives up."""
    retry_max_wait: PositiveDuration = 30.0
    """Longest pause between two retries of a retriable failure (backoff doubles up to this)."""
    once_retry_timeout: Duration = 30.0
    """Under --once, how long an unreachable dependency is retried before exiting with code 5."""
    replica_id: NonEmpty | None = None
    """This replica's name in lease tables (database and Kinesis sources split across replicas);
    default $CONDUITD_REPLICA_ID, else the host name. Every replica needs its own."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    """Backoff, deadline, which errors are retried, and an optional policy from a package."""
    manifest_path: NonEmpty | None = None
    """Append a JSON record per --once run (and per `manifest_interval` in daemon mode) to this file."""
    manifest_interval: PositiveDuration = 300.0
    api: ApiConfig | None = None
    """The control plane's HTTP API and web UI (`conduitd.api`); off unless set."""

    @model_validator(mode="after")
    def _one_longest_wait(self) -> ServiceConfig:
        if "retry_max_wait" in self.model_fields_set and self.retry.max_wait is not None:
            raise ValueError("retry_max_wait and retry.max_wait are one setting: keep one of them")
        return self


class ConnectorConfig(StrictModel):
    """A named source or destination section. Each connector's model extends `SourceConfig` or
    `DestinationConfig` with its own keys; `conduitd.registry` picks the model by `type`."""

    name: str = Field(pattern=_NAME)
    """How resources refer to this section."""
    type: str
    """The connector: a built-in one or one an installed package registers (`conduitd connectors`)."""


class SourceConfig(ConnectorConfig):
    """Base of every source section's model (built-in or from a plugin)."""


class DestinationConfig(ConnectorConfig):
    """Base of every destination section's model (built-in or from a plugin)."""


class FileSourceConfig(SourceConfig, S3Settings):
    """JSONL, CSV or Parquet files in a directory or matching a glob, locally or on S3: the
    embedded default."""

    name: str = Field(pattern=_NAME)
    type: Literal["file"]
    path: NonEmpty
    """A file, a directory (every file in it with a matching extension) or a glob such as data/*.jsonl;
    on S3 an object, a prefix or a glob: s3://bucket/in/, s3://bucket/in/*.jsonl (then the S3 settings:
    endpoint_url, region, access_key_id, secret_access_key, session_token)."""
    format: Literal["jsonl", "csv", "parquet"] | None = None
    """Defaults to the file extension (.jsonl/.json/.ndjson, .csv, .parquet)."""
    poll_interval: PositiveDuration = 1.0
    """In daemon mode, how often new files and appended lines are looked for."""
    partial_line_timeout: Duration = 5.0
    """In daemon mode, a last line without a newline is taken once the file has not grown for this long."""
    read_size: ByteSize = 4 * 1024 * 1024
    """How many bytes are read and decoded at a time (a *chunk*)."""
    csv_delimiter: str = Field(",", min_length=1, max_length=1)
    null_values: tuple[str, ...] = CSV_NULL_VALUES
    """CSV values read as null (compared with the whole field, case-sensitively); `[]`: none."""
    encoding: str = "utf-8"
    """Text encoding of CSV and JSON files (e.g. latin-1); a record that is not valid in it goes to the DLQ."""

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        codec_name(encoding)  # unknown, or one whose line breaks are not single bytes (utf-16): ValueError
        return encoding
    max_record_bytes: ByteSize = 64 * 1024 * 1024
    """A larger record (a line, or an element of a JSON array) goes to the DLQ instead of the table."""

    @model_validator(mode="after")
    def _s3_settings(self) -> FileSourceConfig:
        problem = settings_problem(self, self.path)
        if problem is not None:
            raise ValueError(problem)
        return self


MetadataColumn = Literal["key", "headers", "topic", "partition", "offset", "timestamp"]
_RESERVED_CLIENT_KEYS = {
    "bootstrap.servers": "set 'brokers'", "group.id": "set 'group_id'",
    "enable.auto.commit": "offsets are committed by conduitd after each batch",
    "enable.auto.offset.store": "offsets are stored by conduitd after each batch",
    "auto.offset.reset": "set 'start'",
}


class KafkaSourceConfig(SourceConfig):
    """Kafka topics consumed by a consumer group (confluent-kafka / librdkafka)."""

    name: str = Field(pattern=_NAME)
    type: Literal["kafka"]
    brokers: NonEmpty
    """Comma-separated host:port list (bootstrap.servers)."""
    topics: tuple[NonEmpty, ...] = ()
    topic_pattern: NonEmpty | None = None
    """A regular expression of topic names (instead of `topics`)."""
    group_id: NonEmpty
    format: Literal["json", "raw"] = "json"
    """`json`: each value is a JSON object (one row); `raw`: the value bytes in a `value` column."""
    start: Literal["earliest", "latest"] = "earliest"
    """Where a partition with no stored position starts."""
    client: dict[str, ClientValue] = Field(default_factory=dict)
    """librdkafka properties passed through as they are (session.timeout.ms, security.protocol, sasl.*, ssl.*)."""
    metadata_columns: tuple[MetadataColumn, ...] = ()
    """Kafka metadata added as columns kafka_key, kafka_headers, kafka_topic, kafka_partition, kafka_offset,
    kafka_timestamp."""
    max_record_bytes: ByteSize = 1024 * 1024
    """A larger value goes to the DLQ instead of the table."""
    poll_records: int = Field(50_000, gt=0)
    """Records asked of the client per poll."""

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    _brokers = field_validator("brokers")(_check_brokers)

    @model_validator(mode="after")
    def _check(self) -> KafkaSourceConfig:
        if bool(self.topics) == bool(self.topic_pattern):
            raise ValueError("set exactly one of 'topics' and 'topic_pattern'")
        for key, why in _RESERVED_CLIENT_KEYS.items():
            if key in self.client:
                raise ValueError(f"client property {key!r} is managed by conduitd: {why}")
        strategy = str(self.client.get("partition.assignment.strategy", ""))
        if "cooperative" in strategy:
            raise ValueError("cooperative rebalancing is not supported yet: use range or roundrobin")
        remember(client_secrets(self.client))
        return self


class IncrementalConfig(StrictModel):
    """How a database-table source finds new rows: by a cursor column that only grows."""

    column: Identifier
    """The cursor column (a timestamp or a number; `cursor`: any type with an order)."""
    strategy: Literal["timestamp", "sequential", "cursor", "xid"] | None = None
    """timestamp: set from the writing transaction's clock (DEFAULT now()); polls stop short of the
    oldest running write transaction's start. sequential: from a sequence (serial, identity); a
    poll reads past a value only once every transaction running when it was seen has ended.
    cursor: any growing column, no guard against late commits. xid (PostgreSQL, exact): the
    `conduitd_xid` column `conduitd cdc setup` adds, read below the oldest running transaction.
    Default: timestamp for timestamp columns, sequential for integers, xid for xid8."""
    initial_value: str | int | float | None = None
    """Read only rows whose cursor is above this (in the column's own text form)."""
    lookback_seconds: float = Field(0.0, ge=0.0, le=86_400.0)
    """timestamp strategy: read a row only once the source's clock is this far past its cursor,
    for timestamps the application sets (or a clock that lags) up to this long before the row
    commits. Nothing is read twice; new rows arrive this much later."""
    lag_seconds: float = Field(0.0, ge=0.0, le=86_400.0)
    """timestamp strategy, `mode: upsert` only: each poll also reads again the rows whose cursor
    is within this many seconds below the highest one read, so a row committed late with an older
    application timestamp (or from a lagging clock) is still read; rows read again are absorbed
    by the upsert. The committed position stays the highest row read."""

    @model_validator(mode="after")
    def _lookback_for_timestamps(self) -> IncrementalConfig:
        if self.lookback_seconds and self.strategy not in (None, "timestamp"):
            raise ValueError("lookback_seconds applies to strategy 'timestamp'")
        if self.lag_seconds and self.strategy not in (None, "timestamp"):
            raise ValueError("lag_seconds applies to strategy 'timestamp'")
        return self


class SqliteDestinationConfig(DestinationConfig):
    """A SQLite database file: the embedded default destination."""

    name: str = Field(pattern=_NAME)
    type: Literal["sqlite"]
    path: NonEmpty


class PostgresDestinationConfig(DestinationConfig):
    """A PostgreSQL database reached through asyncpg: a `dsn`, or `host`, `port`, `database`, `user`."""

    name: str = Field(pattern=_NAME)
    type: Literal["postgres"]
    dsn: SecretText | None = None
    """postgresql://user:password@host:port/db or 'host=... user=... password=...'; kept secret in logs,
    /status and errors. May come from elsewhere: `{from: file, path: ...}` (see `password`)."""
    host: NonEmpty | None = None
    port: int | None = Field(None, ge=1, le=65535)
    database: NonEmpty | None = None
    user: NonEmpty | None = None
    password: SecretText | None = None
    """The password, kept out of the DSN: `{from: env, name: PGPASSWORD}`, `{from: file, path: ...}`,
    `{from: <provider>, ...}` (a package's `conduitd.credentials` entry point), or text."""
    db_schema: Identifier = Field("public", alias="schema")
    connect_timeout: PositiveDuration = 10.0
    """Unless the DSN sets connect_timeout."""

    @field_validator("dsn")
    @classmethod
    def _parses(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is None:
            return None
        try:
            params = parse_dsn(dsn.get_secret_value())
        except DsnError as exc:
            raise ValueError(str(exc)) from None
        remember([dsn.get_secret_value(), *params.secrets()])
        return dsn

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> PostgresDestinationConfig:
        fields = [f"`{k}`" for k in ("host", "port", "database", "user") if getattr(self, k) is not None]
        if self.dsn is None:
            if self.host is None and self.database is None:
                raise ValueError("`dsn` or `host` is required (with `database`, `user` and `password`)")
            if self.database is None:
                raise ValueError("`database` is required with `host` (or give a `dsn`)")
        elif fields:
            raise ValueError(f"set either `dsn` or {', '.join(fields)}, not both")
        elif self.password is not None and parse_dsn(self.dsn.get_secret_value()).password is not None:
            raise ValueError("the DSN has a password and 'password' is set: keep one")
        return self

    @property
    def connect_params(self) -> ConnectParams:
        if self.dsn is not None:
            params = parse_dsn(self.dsn.get_secret_value())
        else:
            params = ConnectParams(hosts=(self.host or "127.0.0.1",), ports=(self.port or 5432,), user=self.user,
                                   database=self.database)
        if self.password is None:
            return params
        return dataclasses.replace(params, password=self.password.get_secret_value())


class DlqConfig(StrictModel):
    """Where rejected rows go: a table in the destination (in the batch's transaction: exactly
    once), a JSONL file or a Kafka topic (written just before the batch commits: at least once,
    each entry carrying an `id` that identifies a repeat)."""

    type: Literal["table", "file", "kafka"] = "table"
    table: Identifier | None = None
    """Table name; defaults to `<table>_dlq`."""
    path: NonEmpty | None = None
    """For `type: file`: the JSONL file rejected rows are appended to."""
    brokers: str | None = None
    """For `type: kafka`: bootstrap servers."""
    topic: str | None = None
    """For `type: kafka`: the topic rejected rows are produced to."""
    client: dict[str, ClientValue] = Field(default_factory=dict)
    """For `type: kafka`: librdkafka producer properties."""

    _brokers = field_validator("brokers")(_check_brokers)

    @model_validator(mode="after")
    def _needs_target(self) -> DlqConfig:
        if self.type == "file" and not self.path:
            raise ValueError("dlq type 'file' needs a 'path'")
        if self.type == "kafka" and not (self.brokers and self.topic):
            raise ValueError("dlq type 'kafka' needs 'brokers' and 'topic'")
        remember(client_secrets(self.client))
        return self


class DeletesConfig(StrictModel):
    """How deletes in the source reach the table (mode `upsert` only)."""

    tombstone: bool = True
    """A Kafka record with a key and a null value deletes the row with that key."""
    soft_delete_column: Identifier | None = None
    """A row whose value in this column is true deletes the row with its key (and is not written)."""
    key_scan: PositiveDuration | None = None
    """Database sources: every this long (and at the end of each --once run), compare the table's
    keys with the source's in bounded chunks and delete the rows the source no longer has (hard
    deletes), inside batch transactions. A failed source read deletes nothing."""


class SchemaEvolutionConfig(StrictModel):
    """What happens when a batch's columns differ from the live table's."""

    mode: Literal["auto", "manual", "warn", "strict"] = "auto"
    """auto: apply compatible changes in the batch transaction; manual: write the DDL to a migration
    file and the log, apply nothing, and send rows that need it to the DLQ; warn: log and write what
    fits; strict: stop (exit code 4)."""
    on_type_change: Literal["widen", "fail", "warn"] = "widen"
    """widen: widen the column where a widening holds the values (int -> bigint -> numeric,
    int -> double), rows whose values fit no widening go to the DLQ; fail: stop (exit 4); warn: log,
    rows that do not fit go to the DLQ."""
    on_column_removed: Literal["warn", "fail"] = "warn"
    """A table column the batch lacks: warn (once per column; rows get NULL) or fail (exit 4)."""
    migrations_dir: NonEmpty = "conduitd-migrations"
    """Where `manual` mode writes the DDL it did not apply."""


UNBOUNDED_SOURCES = ("kafka", "kinesis")
"""Source types that never end (streams): `mode: full_refresh` is refused for them at load."""


class PipelineConfig(StrictModel):
    """A pipeline: one source, one destination table, and how rows are written."""

    name: str = Field(pattern=_NAME)
    source: str
    destination: str
    table: Identifier | None = None
    """Destination table; defaults to the pipeline's name."""
    mode: Literal["append", "upsert", "full_refresh"] = "append"
    """append: add the rows; upsert: merge them on `unique_key`; full_refresh: each run replaces
    the table's contents with the rows it read, atomically (bounded sources under --once only).
    The seed tool's `write_mode: merge | truncate | replace` and `primary_keys` are read by
    `conduitd.seedcompat`."""
    project: NonEmpty = Field("default", pattern=_NAME)
    """The team or project the pipeline belongs to: API tokens are scoped to projects."""
    unique_key: tuple[Identifier, ...] = ()
    """Columns identifying a row for `upsert` (and `full_refresh`: the run's last row per key
    wins); within one batch the last row per key wins."""
    batch: BatchConfig = BatchConfig()
    dlq: DlqConfig = DlqConfig()
    deletes: DeletesConfig = DeletesConfig()
    quality_checks: tuple[QualityCheck, ...] = ()
    """Data-quality rules, applied to every batch before it is written (see the README)."""
    schema_evolution: SchemaEvolutionConfig = SchemaEvolutionConfig()
    source_table: Identifier | None = None
    """Database sources: the table to read (`schema.table` allowed); the destination `table`
    defaults to its name."""
    query: NonEmpty | None = None
    """Database sources: a SELECT to read instead of a table (wrapped as a subquery, read only)."""
    incremental: IncrementalConfig | None = None
    """Database sources: the cursor of new rows; without it a table is read whole, once per run
    (--once) or per the source's `poll_interval`."""
    after_commit: AfterCommitConfig = AfterCommitConfig()
    """What runs after the pipeline's data is committed: `dbt` (see `conduitd.dbtsettings`)."""

    @field_validator("unique_key", mode="before")
    @classmethod
    def _one_key_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _upsert_needs_key(self) -> PipelineConfig:
        if self.mode == "upsert" and not self.unique_key:
            raise ValueError("mode 'upsert' needs 'unique_key' (a list of columns)")
        repeated = sorted({k for k in self.unique_key if self.unique_key.count(k) > 1})
        if repeated:
            raise ValueError(f"unique_key names {', '.join(map(repr, repeated))} more than once")
        return self

    @model_validator(mode="after")
    def _one_thing_to_read(self) -> PipelineConfig:
        if self.source_table is not None and self.query is not None:
            raise ValueError("set 'source_table' or 'query', not both")
        if self.deletes.key_scan is not None and self.mode == "full_refresh":
            raise ValueError("deletes.key_scan is not needed with mode 'full_refresh': each run replaces the "
                             "whole table, so rows gone from the source are gone from it")
        if self.deletes.key_scan is not None and self.mode != "upsert":
            raise ValueError("deletes.key_scan deletes rows by key: it needs mode 'upsert' with a unique_key")
        if self.incremental is not None and self.incremental.lag_seconds and self.mode != "upsert":
            raise ValueError("incremental.lag_seconds reads rows again: it needs mode 'upsert' with a unique_key "
                             f"(mode {self.mode!r} would write them twice)")
        return self

    @property
    def table_name(self) -> str:
        if self.table:
            return self.table
        if self.source_table is not None:
            return self.source_table.partition(".")[2] or self.source_table
        return self.name

    @property
    def dlq_table(self) -> str:
        return self.dlq.table or f"{self.table_name}_dlq"


class Config(StrictModel):
    """The whole file. Built in code, it takes section models as they are; data read from a file
    is validated by `conduitd.registry.config_model(data)`, a subclass that knows every installed
    connector's model for its `type`."""

    service: ServiceConfig = ServiceConfig()
    sources: tuple[SourceConfig, ...]
    destinations: tuple[DestinationConfig, ...]
    resources: tuple[PipelineConfig, ...]
    alerts: AlertsConfig | None = None
    """Alerts to a webhook or Slack when a pipeline fails, stalls, lags or rejects rows (`conduitd.ops.alerts`)."""

    @field_validator("resources")
    @classmethod
    def _refresh_needs_an_end(cls, resources: tuple[PipelineConfig, ...],
                              info: ValidationInfo) -> tuple[PipelineConfig, ...]:
        """`mode: full_refresh` reads its source to the end each run: a source that never ends is
        refused here (daemon mode, which no source ends in, is refused when a run starts)."""
        types = {s.name: s.type for s in info.data.get("sources", ())}
        errors = [InitErrorDetails(type=PydanticCustomError("full_refresh_unbounded", (
            "mode `full_refresh` replaces the table with everything the source holds, but a {type} source never "
            "ends: use mode `append` or `upsert`"), {"type": types[p.source]}), loc=(i, "mode"), input=p.mode)
            for i, p in enumerate(resources) if p.mode == "full_refresh" and types.get(p.source) in UNBOUNDED_SOURCES]
        if errors:
            raise ValidationError.from_exception_data("resources", errors)
        return resources

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def destination(self, name: str) -> DestinationConfig:
        return next(d for d in self.destinations if d.name == name)
