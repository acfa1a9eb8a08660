"""The REST source as the registry sees it (`registry._BUILTINS["source"]`). Importing this module
imports no HTTP library; the factory and the check import the source when called."""

from __future__ import annotations

from conduitd.registry import Connector, SourceOptions
from conduitd.sources.base import Source
from conduitd.sources.rest.settings import RestSourceConfig


def _rest_source(config: RestSourceConfig, options: SourceOptions) -> Source:
    from conduitd.sources.rest.source import RestSource

    pipeline = options.pipeline.name if options.pipeline is not None else config.name
    return RestSource(config, pipeline=pipeline, once=options.once, max_rows=options.max_rows)


async def _check_rest(config: RestSourceConfig) -> str:
    """The first page: how many records it holds and whether another follows."""
    import asyncio

    from conduitd.sources.rest.client import RestClient
    from conduitd.sources.rest.pages import first_request, next_request, records_at

    client = RestClient(config)
    try:
        request = first_request(config.pagination, config.params)
        page = await client.get(request, asyncio.Event())
        if page is None:  # only when stopped, and nothing stops this one
            return f"GET {client.shown_url}: no answer"
        try:
            records = records_at(page.body, config.records_path)
        except ValueError as exc:
            return f"GET {client.shown_url}: {exc}"
        more = next_request(config.pagination, request, page.body, page.link, len(records), config.url) is not None
    finally:
        await client.close()
    follows = "; more pages follow" if more else ""
    return f"GET {client.shown_url}: {len(records)} record(s) in the first page{follows}"


REST = Connector(type="rest", kind="source", config_model=RestSourceConfig, factory=_rest_source, check=_check_rest,
                 requires=("httpx",), description="Paginated JSON endpoints over HTTP (cursor, offset, page "
                 "number or Link header), incremental by a field")
