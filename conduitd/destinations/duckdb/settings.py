"""The `type: duckdb` destination's config section. Imports no driver: loading a config that names
it works without DuckDB installed.

    destinations:
      - {name: lake, type: duckdb, path: data/warehouse.duckdb}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from conduitd.config import DestinationConfig, NonEmpty


class DuckdbDestinationConfig(DestinationConfig):
    """A DuckDB database file, written by this one process (DuckDB locks the file)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["duckdb"]
    path: NonEmpty
    """The database file; created with its tables when missing (its directory must exist)."""
