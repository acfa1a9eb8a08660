"""The ClickHouse destination as the registry sees it (`registry._BUILTINS`). Importing this
module imports no driver; the factory imports the destination when called (and the destination
imports chdb or clickhouse-connect when it opens, naming the extra when it is missing)."""

from __future__ import annotations

import importlib

from conduitd.destinations.base import Destination
from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig
from conduitd.registry import Connector


def _clickhouse(config: ClickHouseDestinationConfig) -> Destination:
    from conduitd.destinations.clickhouse.destination import ClickHouseDestination

    return ClickHouseDestination(config)


def _capabilities() -> object:
    return getattr(importlib.import_module("conduitd.destinations.clickhouse"), "CAPABILITIES", None)


CLICKHOUSE = Connector(type="clickhouse", kind="destination", config_model=ClickHouseDestinationConfig,
                       factory=_clickhouse, capabilities=_capabilities, extra="clickhouse",
                       description="ClickHouse: embedded (chdb, `path`) or a server over HTTP "
                                   "(clickhouse-connect, `url`)")
