"""Sources: where records come from, looked up in `conduitd.registry` by their `type`."""

from __future__ import annotations

from conduitd.config import PipelineConfig, ServiceConfig, SourceConfig
from conduitd.core.records import Position
from conduitd.registry import SourceOptions, build, load, missing_driver
from conduitd.sources.base import Checkpoints, Source


def open_source(config: SourceConfig, pipeline: PipelineConfig, service: ServiceConfig, *, once: bool) -> Source:
    """The source for `config`, feeding `pipeline`; `once` makes it stop where the data stood at
    start. Drivers are imported only when used. Its chunks start at `batch.first_rows` rows (under
    `max_rows: auto` the pipeline's `BatchSizer` then keeps them at the batch size it steers)."""
    upsert = pipeline.mode == "upsert"
    options = SourceOptions(once=once, max_rows=pipeline.batch.first_rows,
                            key_columns=pipeline.unique_key if upsert else (),
                            tombstones=upsert and pipeline.deletes.tombstone,
                            unreachable_after=service.once_retry_timeout, pipeline=pipeline)
    source: Source = build("source", config, options)
    return source


async def check_source(config: SourceConfig) -> str:
    """One line on what the source can see now; raise DependencyUnreachable when it sees nothing."""
    connector = load("source", config.type)
    missing_driver(connector, raise_=True)
    if connector.check is None:
        return f"the {config.type!r} source offers no check"
    return await connector.check(config)


async def inspect_source(config: SourceConfig, pipeline: PipelineConfig,
                         positions: dict[str, Position]) -> list[tuple[str, str, str]]:
    """The source's findings about one pipeline for `validate`: (check, status, detail); [] for a
    source that offers none."""
    connector = load("source", config.type)
    if connector.inspect is None or missing_driver(connector) is not None:
        return []
    return await connector.inspect(config, pipeline, positions)


__all__ = ["Checkpoints", "Source", "check_source", "inspect_source", "open_source"]
