"""The `type: postgres` source's config section. Imports no driver.

    sources:
      - {name: shop, type: postgres, dsn: "postgresql://reader:${PW}@db:5432/shop"}
      - {name: shop2, type: postgres, host: db, database: shop, user: reader, password: {from: env, name: PGPASSWORD}}
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, model_validator

from conduitd.config import Identifier, NonEmpty, SourceConfig
from conduitd.core.dsn import ConnectParams, DsnError, parse_dsn
from conduitd.core.redact import remember
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText


class PostgresSourceConfig(SourceConfig):
    """A PostgreSQL database whose tables are read by polling (`source_table` or `query` per
    pipeline). Connection as a `dsn` or the seed tool's fields."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["postgres"]
    dsn: SecretText | None = None
    """postgresql://user:password@host:port/db; or leave it out and give the fields below."""
    connection_string: SecretText | None = None
    """The seed tool's name for `dsn`."""
    host: NonEmpty | None = None
    port: int | None = Field(None, ge=1, le=65535)
    database: NonEmpty | None = None
    user: NonEmpty | None = None
    password: SecretText | None = None
    """Kept out of the DSN: `{from: env, name: PGPASSWORD}`, `{from: file, path: ...}`, or text."""
    db_schema: Identifier = Field("public", alias="schema")
    """Schema of a `source_table` that names none."""
    mode: Literal["poll", "log"] = "poll"
    """`poll`: read the tables with a cursor; `log`: log-based change capture through a logical
    replication slot (`conduitd.sources.pglog`; `conduitd cdc setup --apply` creates the slot and
    the publication), with every insert, update and delete."""
    op_column: Identifier | None = None
    """`mode: log` only: a text column added to every row, saying what it is: `snapshot` (read by
    the initial snapshot), `insert`, `update` or `delete`. In `append` mode deletes are then
    appended as rows (their key, or the whole old row under REPLICA IDENTITY FULL)."""
    poll_interval: PositiveDuration = 1.0
    """Daemon mode: pause after a poll that found nothing new."""
    connect_timeout: PositiveDuration = 10.0
    lease_ttl: PositiveDuration | None = 30.0
    """Replicas running the same pipelines split the tables through leases in the destination:
    a lease lasts this long, is renewed every third of it, and moves to another replica when it
    expires. Unset (null): no lease, this replica reads every table it is given."""

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> PostgresSourceConfig:
        dsn = self.dsn or self.connection_string
        if self.dsn is not None and self.connection_string is not None:
            raise ValueError("set 'dsn' or 'connection_string', not both")
        fields = [k for k in ("host", "port", "database", "user") if getattr(self, k) is not None]
        if dsn is not None and fields:
            raise ValueError(f"set either a DSN or the fields {', '.join(fields)}, not both")
        if dsn is not None:
            try:
                params = parse_dsn(dsn.get_secret_value())
            except DsnError as exc:
                raise ValueError(str(exc)) from None
            remember([dsn.get_secret_value(), *params.secrets()])
            if self.password is not None and params.password is not None:
                raise ValueError("the DSN has a password and 'password' is set: keep one")
        return self

    @model_validator(mode="after")
    def _op_column_needs_the_log(self) -> PostgresSourceConfig:
        if self.op_column is not None and self.mode != "log":
            raise ValueError("op_column says which change made each row: it needs mode 'log' (a polling source "
                             "sees rows, not inserts, updates and deletes)")
        return self

    @property
    def connect_params(self) -> ConnectParams:
        dsn = self.dsn or self.connection_string
        if dsn is not None:
            params = parse_dsn(dsn.get_secret_value())
        else:
            params = ConnectParams(hosts=(self.host or "127.0.0.1",), ports=(self.port or 5432,), user=self.user,
                                   database=self.database)
        if self.password is not None:
            params = dataclasses.replace(params, password=self.password.get_secret_value())
        return params
