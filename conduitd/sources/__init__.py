"""Sources: where records come from. `open_source` picks the implementation for a config."""

from __future__ import annotations

from conduitd.config import FileSourceConfig, ResourceConfig, ServiceConfig, SourceConfig
from conduitd.sources.base import Checkpoints, Source


def open_source(config: SourceConfig, resource: ResourceConfig, service: ServiceConfig, *, once: bool) -> Source:
    """The source for `config`, feeding `resource`; `once` makes it stop where the data stood at
    start. Drivers are imported only when used."""
    max_rows = resource.batch.max_rows
    if isinstance(config, FileSourceConfig):
        from conduitd.sources.files import FileSource

        return FileSource(config, once=once, max_rows=max_rows)
    from conduitd.sources.kafka import KafkaSource

    upsert = resource.mode == "upsert"
    return KafkaSource(config, once=once, max_rows=max_rows, key_columns=resource.unique_key if upsert else (),
                       tombstones=upsert and resource.deletes.tombstone,
                       unreachable_after=service.once_retry_timeout)


async def check_source(config: SourceConfig) -> str:
    """One line on what the source can see now; raise DependencyUnreachable when it sees nothing."""
    if isinstance(config, FileSourceConfig):
        from conduitd.sources.files import FileSource

        files = FileSource(config, once=True, max_rows=1).discover()
        return f"{len(files)} file(s) match {config.path}"
    from conduitd.sources.kafka.admin import describe_topics

    return await describe_topics(config)


__all__ = ["Checkpoints", "Source", "check_source", "open_source"]
