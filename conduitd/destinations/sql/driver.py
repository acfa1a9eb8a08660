"""The little a SQL driver must offer for the bookkeeping to be written once (`Bookkeeping`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class BookkeepingTypes:
    """How the bookkeeping tables are spelled in one SQL dialect."""

    json: str
    """Column type of a position (jsonb; TEXT)."""
    json_param: str
    """A JSON text parameter `{}` as a value of that type ("{}::jsonb"; "{}")."""
    json_text: str
    """A column `{}` of that type read as text ("{}::text"; "{}")."""
    timestamp: str
    """Column type of a time (timestamptz; TEXT)."""
    now: str
    """The current time as a value of that type, usable in DEFAULT and in SET."""
    created_now: str
    """The DEFAULT of a DLQ row's created_at (what `timestamp_param` compares with)."""
    serial_key: str
    """An auto-numbered primary key column type."""
    boolean: str
    text: str = "text"
    """Column type of a text of any length (MySQL's TEXT stops at 64 KiB: LONGTEXT)."""
    pipeline_text: str = "text"
    """Column type of the checkpoints' `pipeline`, part of their primary key (MySQL: a bounded VARCHAR)."""
    partition_text: str = "text"
    """Column type of the checkpoints' `partition`, part of their primary key."""
    keep_existing: str = "ON CONFLICT DO NOTHING"
    """What ends an INSERT that leaves an existing row with the same key alone, changing no row
    (MySQL: ON DUPLICATE KEY UPDATE of a column to itself)."""
    quote: str = '"'
    """The identifier quote (MySQL: a backtick): `partition` and `change` are reserved words there."""
    table_options: str = ""
    """Text after a CREATE TABLE's column list (MySQL: engine, character set, collation)."""
    seconds_now: str = "extract(epoch FROM clock_timestamp())"
    """The server's clock in seconds since 1970 (double precision): lease expiry is judged by the
    destination's clock alone, so replicas' clocks need not agree."""


class SqlDriver(Protocol):
    """One connection, used by one task at a time. Every method raises errors of
    `conduitd.errors` (translated from the driver's), never the driver's own."""

    types: BookkeepingTypes

    def param(self, n: int) -> str:
        """The placeholder of the n-th parameter, from 1 ("?"; "$1"; "%s")."""

    def table(self, name: str) -> str:
        """The quoted (and schema-qualified) name of a table."""

    def text(self, value: str | None) -> str | None:
        """A text value as the store can keep it (PostgreSQL text cannot hold NUL)."""

    def timestamp_param(self, value: datetime) -> Any:
        """A time as a parameter compared with a DLQ row's created_at."""

    def now(self) -> Any:
        """The current time as a parameter for a checkpoint's updated_at."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]: ...

    async def run(self, *statements: str) -> None:
        """Run statements without parameters, in order, in as few round trips as the driver can."""

    async def table_exists(self, name: str) -> bool: ...

    async def create_missing(self, statements: Mapping[str, str]) -> None:
        """Run the `CREATE TABLE IF NOT EXISTS` statements ({table: statement}) of the tables that
        do not exist yet (an existing table is left alone: its owner may be another role)."""
