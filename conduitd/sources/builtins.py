"""The built-in sources as the registry sees them: the same `Connector` declaration a plugin
makes. Importing this module imports no driver; each factory imports its source when called."""

from __future__ import annotations

from conduitd.config import FileSourceConfig, KafkaSourceConfig, PipelineConfig
from conduitd.core.records import Position
from conduitd.errors import ConfigError
from conduitd.registry import Connector, SourceOptions
from conduitd.sources.base import Source
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig


def _file_source(config: FileSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.files import FileSource

    return FileSource(config, once=options.once, max_rows=options.max_rows)


async def _check_files(config: FileSourceConfig) -> str:
    from conduitd.sources.files import FileSource

    files = FileSource(config, once=True, max_rows=1).discover()
    return f"{len(files)} file(s) match {config.path}"


def _kafka_source(config: KafkaSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.kafka import KafkaSource

    return KafkaSource(config, once=options.once, max_rows=options.max_rows, key_columns=options.key_columns,
                       tombstones=options.tombstones, unreachable_after=options.unreachable_after)


async def _check_kafka(config: KafkaSourceConfig) -> str:
    from conduitd.sources.kafka.admin import describe_topics

    return await describe_topics(config)


FILE = Connector(type="file", kind="source", config_model=FileSourceConfig, factory=_file_source, check=_check_files,
                 description="JSONL, CSV or Parquet files in a directory or matching a glob, locally or on S3")
KAFKA = Connector(type="kafka", kind="source", config_model=KafkaSourceConfig, factory=_kafka_source,
                  check=_check_kafka, capabilities=("deletes", "scale_out"), requires=("confluent_kafka",),
                  extra="kafka", description="Kafka topics read by a consumer group")


def _postgres_source(config: PostgresSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.tables.postgres import postgres_source

    if options.pipeline is None:
        raise ConfigError(f"source {config.name!r}: a database source reads for one pipeline")
    if config.mode == "log":
        from conduitd.sources.pglog import LogSource

        return LogSource(config, options.pipeline, once=options.once, max_rows=options.max_rows,
                         deletes=options.tombstones, unreachable_after=options.unreachable_after)
    return postgres_source(config, options.pipeline, once=options.once, max_rows=options.max_rows,
                           unreachable_after=options.unreachable_after)


async def _check_postgres(config: PostgresSourceConfig) -> str:
    from conduitd.sources.tables.postgres import connect

    conn = await connect(config)
    try:
        version = await conn.fetchval("SELECT current_setting('server_version')")
    finally:
        await conn.close()
    return f"PostgreSQL {version} at {config.connect_params.where()}"


async def _inspect_postgres(config: PostgresSourceConfig, pipeline: PipelineConfig,
                            positions: dict[str, Position]) -> list[tuple[str, str, str]]:
    if config.mode == "log":
        from conduitd.sources.pglog.inspect import inspect as inspect_log

        return await inspect_log(config, pipeline)
    from conduitd.sources.tables.postgres_inspect import inspect

    return await inspect(config, pipeline, positions)


POSTGRES = Connector(type="postgres", kind="source", config_model=PostgresSourceConfig, factory=_postgres_source,
                     check=_check_postgres, inspect=_inspect_postgres, capabilities=("deletes", "key_scan", "leases"),
                     requires=("asyncpg",), extra="postgres",
                     description="PostgreSQL tables or queries, polled with a cursor safe against late commits")
