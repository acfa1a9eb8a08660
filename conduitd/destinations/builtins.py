"""The built-in destinations as the registry sees them: the same `Connector` declaration a plugin
makes. Importing this module imports no driver; each factory imports its destination when called."""

from __future__ import annotations

import importlib

from conduitd.config import PostgresDestinationConfig, SqliteDestinationConfig
from conduitd.destinations.base import Destination
from conduitd.registry import Connector


def _sqlite(config: SqliteDestinationConfig) -> Destination:
    from conduitd.destinations.sqlite import SqliteDestination

    return SqliteDestination(config)


def _postgres(config: PostgresDestinationConfig) -> Destination:
    from conduitd.destinations.postgres import PostgresDestination

    return PostgresDestination(config)


def _capabilities_of(module: str) -> object:
    """The destination module's CAPABILITIES, read when listed (importing it imports its driver)."""
    return lambda: getattr(importlib.import_module(module), "CAPABILITIES", None)


SQLITE = Connector(type="sqlite", kind="destination", config_model=SqliteDestinationConfig, factory=_sqlite,
                   capabilities=_capabilities_of("conduitd.destinations.sqlite"),
                   description="a SQLite database file (the embedded default)")
POSTGRES = Connector(type="postgres", kind="destination", config_model=PostgresDestinationConfig, factory=_postgres,
                     capabilities=_capabilities_of("conduitd.destinations.postgres"), requires=("asyncpg",),
                     extra="postgres", description="a PostgreSQL database (asyncpg)")
