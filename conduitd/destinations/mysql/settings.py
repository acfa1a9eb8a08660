"""The `type: mysql` destination's config section (MySQL and MariaDB alike). Imports no driver:
loading a config that names it works without asyncmy installed.

    destinations:
      - {name: wh, type: mysql, dsn: "mysql://app:${PW}@db:3306/warehouse"}
      - {name: wh2, type: mysql, host: db, database: warehouse, user: app, password: {from: env, name: MYSQL_PW}}

A DSN is parsed once, at config load (`conduitd.core.mysql_dsn`, shared with the source): a bad one
is a config error naming the key, and no message ever quotes the DSN or its password.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from conduitd.config import DestinationConfig
from conduitd.core.mysql_dsn import MysqlDsnError, MysqlParams, parse_mysql_dsn
from conduitd.core.redact import remember
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText


class MysqlDestinationConfig(DestinationConfig):
    """A MySQL (8.0+) or MariaDB (10.5+) database reached through asyncmy; InnoDB tables."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["mysql"]
    dsn: SecretText | None = None
    """mysql://user:password@host:port/database; kept secret in logs, /status and errors. Or the keys below."""
    host: str | None = None
    port: int = Field(3306, gt=0, lt=65536)
    database: str | None = Field(None, min_length=1, max_length=64)
    """The database (schema) the tables go to: required, in the DSN or here."""
    user: str | None = None
    password: SecretText | None = None
    """Text or `{from: env, name: MYSQL_PWD}`, `{from: file, path: ...}`, `{from: <provider>, ...}`."""
    connect_timeout: PositiveDuration = 10.0

    @field_validator("dsn")
    @classmethod
    def _parses(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is None:
            return None
        try:
            params = parse_mysql_dsn(dsn.get_secret_value())
        except MysqlDsnError as exc:
            raise ValueError(str(exc)) from None
        remember([dsn.get_secret_value(), params.password])
        return dsn

    @model_validator(mode="after")
    def _complete(self) -> MysqlDestinationConfig:
        if self.dsn is not None:
            given = [k for k in ("host", "database", "user") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"set either 'dsn' or {', '.join(map(repr, given))}, not both")
            if self.password is not None and parse_mysql_dsn(self.dsn.get_secret_value()).password is not None:
                raise ValueError("the DSN has a password and 'password' is set: keep one")
        if self.connect_params.database is None:
            raise ValueError("name the database: 'database', or the DSN's /database")
        return self

    @property
    def connect_params(self) -> MysqlParams:
        if self.dsn is not None:
            params = parse_mysql_dsn(self.dsn.get_secret_value())
        else:
            params = MysqlParams(self.host or "127.0.0.1", self.port, self.user, None, self.database)
        if self.password is not None:
            params = MysqlParams(params.host, params.port, params.user, self.password.get_secret_value(),
                                 params.database)
        return params
