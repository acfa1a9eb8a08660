"""The DuckDB destination as the registry sees it (`registry._BUILTINS`). Importing this module
imports no driver; the factory imports the destination (and `duckdb`) when called."""

from __future__ import annotations

from conduitd.destinations.base import Destination
from conduitd.destinations.duckdb import CAPABILITIES
from conduitd.destinations.duckdb.settings import DuckdbDestinationConfig
from conduitd.registry import Connector


def _duckdb(config: DuckdbDestinationConfig) -> Destination:
    from conduitd.destinations.duckdb.destination import DuckdbDestination

    return DuckdbDestination(config)


DUCKDB = Connector(type="duckdb", kind="destination", config_model=DuckdbDestinationConfig, factory=_duckdb,
                   capabilities=CAPABILITIES, requires=("duckdb",), extra="duckdb",
                   description="a DuckDB database file (embedded, analytical)")
