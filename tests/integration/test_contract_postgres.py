"""The connector contract kit (`conduitd.testing.contract`) run against the PostgreSQL destination,
each test in a fresh schema (`pg_schema`, dropped afterwards)."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from conduitd.config import PostgresDestinationConfig
from conduitd.core.dsn import parse_dsn
from conduitd.destinations.base import Destination
from conduitd.destinations.postgres import PostgresDestination
from conduitd.testing.contract import DestinationContract, SecretCase
from tests.helpers.kafka import free_port


def destination(dsn: str, schema: str) -> PostgresDestination:
    return PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "d", "type": "postgres", "dsn": dsn, "schema": schema, "connect_timeout": 5}))


class TestPostgresContract(DestinationContract):
    @pytest.fixture(autouse=True)
    def _schema(self, pg_dsn: str, pg_schema: str) -> None:
        self.dsn, self.schema = pg_dsn, pg_schema

    def make_destination(self) -> Destination:
        return destination(self.dsn, self.schema)

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            quoted = '"' + table.replace('"', '""') + '"'
            return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{self.schema}".{quoted}')]
        finally:
            await conn.close()

    def secret_cases(self) -> Sequence[SecretCase]:
        server = parse_dsn(self.dsn)
        host, port = server.hosts[0] if server.hosts else "127.0.0.1", server.ports[0] if server.ports else 5432
        secret = f"Contract-{uuid.uuid4().hex[:8]}-p@ss:w/rd"
        password = urllib.parse.quote(secret, safe="")
        unknown_role = f"postgresql://no_such_role_{uuid.uuid4().hex[:6]}:{password}@{host}:{port}/postgres"
        nobody_listens = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/postgres"
        return [SecretCase(lambda dsn=dsn: destination(dsn, self.schema), secret)  # type: ignore[misc]
                for dsn in (unknown_role, nobody_listens)]
