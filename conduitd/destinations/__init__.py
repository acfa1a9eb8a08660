"""Destinations: where rows are written. `open_destination` picks the implementation for a config."""

from __future__ import annotations

from conduitd.config import PostgresDestinationConfig, SqliteDestinationConfig
from conduitd.destinations.base import Destination


def make_destination(config: SqliteDestinationConfig | PostgresDestinationConfig) -> Destination:
    """A closed destination for `config`; drivers are imported only when used."""
    if isinstance(config, PostgresDestinationConfig):
        from conduitd.destinations.postgres import PostgresDestination

        return PostgresDestination(config)
    from conduitd.destinations.sqlite import SqliteDestination

    return SqliteDestination(config)


__all__ = ["Destination", "make_destination"]
