"""The `type: snowflake` destination's config section, with the connection keys Conduit Core had.
Imports no driver: loading a config that names it works without the Snowflake connector.

    destinations:
      - {name: wh, type: snowflake, account: xy12345.eu-west-1, user: LOADER,
         password: {from: env, name: SNOWFLAKE_PASSWORD}, database: ANALYTICS, schema: RAW,
         warehouse: LOAD_WH, role: LOADER}

A seed config without these keys takes them from SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, ... (see
`conduitd.seedcompat`). `database` and `schema` are resolved as Snowflake resolves an unquoted
name (a plain name is upper-cased, `analytics` is ANALYTICS); any other spelling is taken exactly.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from conduitd.config import DestinationConfig, NonEmpty
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def resolved(name: str) -> str:
    """The object name Snowflake resolves `name` to when written unquoted (a plain name is
    upper-cased); any other name is exact (it needs quotes)."""
    return name.upper() if _PLAIN.match(name) else name


class SnowflakeDestinationConfig(DestinationConfig):
    """A Snowflake database reached through snowflake-connector-python."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["snowflake"]
    account: NonEmpty
    """The account identifier (`orgname-account` or `locator.region`), as the connector takes it."""
    user: NonEmpty
    password: SecretText | None = None
    """Text or `{from: env, name: SNOWFLAKE_PASSWORD}`, `{from: file, path: ...}`; never shown."""
    database: NonEmpty
    """The database the tables go to (it must exist)."""
    db_schema: NonEmpty = Field("PUBLIC", alias="schema")
    """The schema the tables go to (created when missing)."""
    warehouse: NonEmpty | None = None
    """The warehouse the loads and merges run on (else the user's default)."""
    role: NonEmpty | None = None
    """The role to use (else the user's default)."""
    connect_timeout: PositiveDuration = 30.0
    """Seconds a login may take before the destination counts as unreachable."""

    @property
    def database_name(self) -> str:
        return resolved(self.database)

    @property
    def schema_name(self) -> str:
        return resolved(self.db_schema)

    def where(self) -> str:
        """What logs and errors may show of the connection (no secret)."""
        return f"account {self.account!r}, {self.database_name}.{self.schema_name} as {self.user!r}"
