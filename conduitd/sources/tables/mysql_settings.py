"""The `type: mysql` source's config section (MySQL 8 and MariaDB alike). Imports no driver.

    sources:
      - {name: shop, type: mysql, dsn: "mysql://reader:${PW}@db:3306/shop"}
      - {name: shop2, type: mysql, host: db, database: shop, user: reader, password: {from: env, name: MYSQL_PWD}}

In MySQL a schema IS a database: a pipeline's `source_table: orders` is read from the section's
`schema` (default: its `database`), `source_table: other_db.orders` from `other_db` (the login
needs SELECT there). A DSN is parsed once, at config load (`conduitd.core.mysql_dsn`, shared with
the destination); a bad one is an error naming the key and never quoting the DSN.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from conduitd.config import Identifier, SourceConfig
from conduitd.core.mysql_dsn import MysqlDsnError, MysqlParams, parse_mysql_dsn
from conduitd.core.redact import remember
from conduitd.core.units import PositiveDuration
from conduitd.credentials import SecretText


class MysqlSourceConfig(SourceConfig):
    """A MySQL (8.0+) or MariaDB (10.5+) database whose tables are read by polling (`source_table`
    or `query` per pipeline), through asyncmy. Connection as a `dsn` or the seed tool's fields."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["mysql"]
    dsn: SecretText | None = None
    """mysql://user:password@host:port/database; or leave it out and give the fields below."""
    connection_string: SecretText | None = None
    """The seed tool's name for `dsn`."""
    host: str | None = Field(None, min_length=1)
    port: int = Field(3306, gt=0, lt=65536)
    database: str | None = Field(None, min_length=1, max_length=64)
    user: str | None = Field(None, min_length=1)
    password: SecretText | None = None
    """Text or `{from: env, name: MYSQL_PWD}`, `{from: file, path: ...}`, `{from: <provider>, ...}`."""
    db_schema: str | None = Field(None, alias="schema", min_length=1, max_length=64)
    """The database of a `source_table` that names none (MySQL's schemas are its databases);
    default: the connection's database."""
    mode: Literal["poll", "log"] = "poll"
    """`poll`: read the table with a cursor; `log`: every insert, update and delete from the ROW
    binary log, after an initial snapshot (`conduitd.sources.mysqllog`; a `source_table`, MariaDB)."""
    server_id: int | None = Field(None, gt=0, lt=2**32)
    """`mode: log` only: the replica id the binlog reader announces, unique among the server's
    replicas; default: derived from the pipeline's name."""
    op_column: Identifier | None = None
    """`mode: log` only: a text column added to every row, saying what it is: `snapshot` (read by
    the initial snapshot), `insert`, `update` or `delete`. In `append` mode deletes are then
    appended as rows (their key, the other columns null)."""
    poll_interval: PositiveDuration = 1.0
    """Daemon mode: pause after a poll that found nothing new."""
    connect_timeout: PositiveDuration = 10.0
    lease_ttl: PositiveDuration | None = 30.0
    """Replicas running the same pipelines split the tables through leases in the destination (see
    the PostgreSQL source); null: no lease."""

    @field_validator("dsn", "connection_string")
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
    def _one_way_to_connect(self) -> MysqlSourceConfig:
        if self.dsn is not None and self.connection_string is not None:
            raise ValueError("set 'dsn' or 'connection_string', not both")
        dsn = self.dsn or self.connection_string
        if dsn is not None:
            given = [k for k in ("host", "database", "user") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"set either a DSN or {', '.join(map(repr, given))}, not both")
            if self.password is not None and parse_mysql_dsn(dsn.get_secret_value()).password is not None:
                raise ValueError("the DSN has a password and 'password' is set: keep one")
        if self.schema_name is None:
            raise ValueError("name the database: 'database', the DSN's /database, or 'schema'")
        if self.server_id is not None and self.mode != "log":
            raise ValueError("server_id is the binlog reader's replica id: it needs mode 'log'")
        if self.op_column is not None and self.mode != "log":
            raise ValueError("op_column says which change made each row: it needs mode 'log' (a polling source "
                             "sees rows, not inserts, updates and deletes)")
        return self

    @property
    def schema_name(self) -> str | None:
        """The database a bare `source_table` is in."""
        return self.db_schema or self.connect_params.database

    @property
    def connect_params(self) -> MysqlParams:
        dsn = self.dsn or self.connection_string
        if dsn is not None:
            params = parse_mysql_dsn(dsn.get_secret_value())
        else:
            params = MysqlParams(self.host or "127.0.0.1", self.port, self.user, None, self.database)
        if self.password is not None:
            params = MysqlParams(params.host, params.port, params.user, self.password.get_secret_value(),
                                 params.database)
        return params
