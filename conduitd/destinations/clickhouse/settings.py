"""The `type: clickhouse` destination's config section. Imports no driver.

    destinations:
      - {name: olap, type: clickhouse, path: data/olap.chdb}                  # embedded (chdb)
      - {name: olap, type: clickhouse, url: "http://localhost:8123", database: analytics,
         user: loader, password: {from: env, name: CLICKHOUSE_PASSWORD}}     # a server (HTTP)

Exactly one of `path` (embedded, chdb: the directory holding the data) and `url` (a ClickHouse
server's HTTP interface, clickhouse-connect) is given.
"""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from conduitd.config import DestinationConfig, NonEmpty
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText


class ClickHouseDestinationConfig(DestinationConfig):
    """A ClickHouse database: embedded through chdb (`path`) or a server through its HTTP interface (`url`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["clickhouse"]
    path: NonEmpty | None = None
    """Embedded mode: the directory chdb keeps the database in (created when missing)."""
    url: NonEmpty | None = None
    """Server mode: the HTTP(S) interface, e.g. `http://localhost:8123` (`https://` for TLS)."""
    user: NonEmpty = "default"
    """Server mode: the user to log in as."""
    password: SecretText | None = None
    """Server mode: text or `{from: env, name: CLICKHOUSE_PASSWORD}`, `{from: file, path: ...}`; never shown."""
    database: NonEmpty = "default"
    """The database the tables go to (created when missing)."""
    connect_timeout: PositiveDuration = 10.0
    """Server mode: seconds connecting may take before the destination counts as unreachable."""

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of `path` (embedded, chdb) and `url` (a ClickHouse server)")
        return self

    def where(self) -> str:
        """What logs and errors may show of the connection (no secret)."""
        if self.path is not None:
            return f"embedded at {self.path!r}, database {self.database!r}"
        shown = urlsplit(self.url or "")
        host = shown._replace(netloc=shown.netloc.rpartition("@")[2]).geturl()  # never a password in the URL
        return f"{host!r}, database {self.database!r} as {self.user!r}"
