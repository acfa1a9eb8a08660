"""The `type: file` destination as the registry sees it (`conduitd.registry`)."""

from __future__ import annotations

from conduitd.destinations.base import Destination
from conduitd.destinations.files.settings import FileDestinationConfig
from conduitd.registry import Connector


def _file(config: FileDestinationConfig) -> Destination:
    from conduitd.destinations.files.destination import FileDestination

    return FileDestination(config)


def _capabilities() -> object:
    from conduitd.destinations.files.destination import CAPABILITIES

    return CAPABILITIES


FILE = Connector(type="file", kind="destination", config_model=FileDestinationConfig, factory=_file,
                 capabilities=_capabilities,
                 description="CSV, JSON, JSON lines or Parquet files, local or on S3 (effectively-once)")
