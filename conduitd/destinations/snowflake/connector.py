"""The Snowflake destination as the registry sees it (`registry._BUILTINS`). Importing this
module imports no driver; the factory imports the destination (and the connector) when called."""

from __future__ import annotations

import importlib

from conduitd.destinations.base import Destination
from conduitd.destinations.snowflake.settings import SnowflakeDestinationConfig
from conduitd.registry import Connector


def _snowflake(config: SnowflakeDestinationConfig) -> Destination:
    from conduitd.destinations.snowflake.destination import SnowflakeDestination

    return SnowflakeDestination(config)


def _capabilities() -> object:
    return getattr(importlib.import_module("conduitd.destinations.snowflake"), "CAPABILITIES", None)


SNOWFLAKE = Connector(type="snowflake", kind="destination", config_model=SnowflakeDestinationConfig,
                      factory=_snowflake, capabilities=_capabilities, requires=("snowflake.connector",),
                      extra="snowflake", description="a Snowflake database (snowflake-connector-python)")
