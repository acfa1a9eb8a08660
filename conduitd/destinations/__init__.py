"""Destinations: where rows are written, looked up in `conduitd.registry` by their `type`."""

from __future__ import annotations

from conduitd.config import DestinationConfig
from conduitd.destinations.base import Destination
from conduitd.registry import build


def make_destination(config: DestinationConfig) -> Destination:
    """A closed destination for `config`; drivers are imported only when used."""
    destination: Destination = build("destination", config)
    return destination


__all__ = ["Destination", "make_destination"]
