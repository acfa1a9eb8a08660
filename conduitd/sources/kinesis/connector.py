"""The Kinesis source as the registry sees it (`registry._BUILTINS["source"]`). Importing this
module imports no AWS library; the factory and the check import the source when called."""

from __future__ import annotations

from conduitd.registry import Connector, SourceOptions
from conduitd.sources.base import Source
from conduitd.sources.kinesis.settings import KinesisSourceConfig


def _kinesis_source(config: KinesisSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.kinesis.source import KinesisSource

    pipeline = options.pipeline.name if options.pipeline is not None else config.name
    return KinesisSource(config, pipeline=pipeline, once=options.once, max_rows=options.max_rows,
                         unreachable_after=options.unreachable_after)


async def _check_kinesis(config: KinesisSourceConfig) -> str:
    """Each stream's shards: open and closed."""
    from conduitd.sources.kinesis.api import KinesisApi

    api = KinesisApi(config)
    try:
        parts = []
        for stream in config.stream_names:
            shards = await api.list_shards(stream)
            closed = sum(1 for s in shards if s.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))
            parts.append(f"{stream}: {len(shards) - closed} open shard(s), {closed} closed")
    finally:
        await api.close()
    return f"{api.where}: " + "; ".join(parts)


KINESIS = Connector(type="kinesis", kind="source", config_model=KinesisSourceConfig, factory=_kinesis_source,
                    check=_check_kinesis, capabilities=("leases", "scale_out"), requires=("aiobotocore",),
                    extra="kinesis", description="Kinesis Data Streams, shards read parent-first and leased "
                    "across replicas")
