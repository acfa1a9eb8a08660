"""The connector contract kit (`conduitd.testing.contract`) run against the ClickHouse destination:
embedded (chdb) always; a server (clickhouse-connect) when CLICKHOUSE_URL names one
(e.g. `http://localhost:8123`), skipped otherwise. `CLICKHOUSE_URL=chdb:///some/dir` runs the
server-mode code (clickhouse-connect's client) against clickhouse-connect's chdb backend: its
calls, not its HTTP transport."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from conduitd.destinations.base import Destination
from conduitd.destinations.clickhouse.destination import ClickHouseDestination
from conduitd.destinations.clickhouse.dialect import META, literal, quote
from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig
from conduitd.testing.contract import DestinationContract, Refusal, SecretCase


async def read_table(config: ClickHouseDestinationConfig, table: str) -> list[dict[str, Any]]:
    """Every row of `table` as a reader sees it: FINAL on the tables that replace rows, conduitd's
    columns left out; read through a destination of its own, opened read-only (no recovery)."""
    reader = ClickHouseDestination(config)
    await reader.open(read_only=True)
    try:
        books = reader.books
        engine = await books.client.rows(f"SELECT engine FROM system.tables WHERE database = "
                                         f"{literal(books.database)} AND name = {literal(table)}")
        final = " FINAL" if "Replacing" in str(engine[0][0]) else ""
        names = [str(c[0]) for c in await books.client.rows(
            f"SELECT name FROM system.columns WHERE database = {literal(books.database)} AND table = {literal(table)} "
            "ORDER BY position") if c[0] not in META]
        rows = await books.client.rows(f"SELECT {', '.join(quote(n) for n in names)} FROM {books.table(table)}{final}")
        return [dict(zip(names, r, strict=True)) for r in rows]
    finally:
        await reader.close()


class _ClickHouseContract(DestinationContract):
    """Rows are read as a reader would (`read_table`)."""

    def config(self) -> ClickHouseDestinationConfig:
        raise NotImplementedError

    def make_destination(self) -> Destination:
        return ClickHouseDestination(self.config())

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        return await read_table(self.config(), table)

    async def refusal(self, destination: Destination) -> Refusal | None:
        # ClickHouse enforces no unique key; a CHECK constraint is what it refuses a row by.
        ddl = ("CREATE TABLE {} (`id` Int64, `name` Nullable(String), _conduitd_batch String, "
               "_conduitd_version UInt64, _conduitd_deleted UInt8 DEFAULT 0, CONSTRAINT positive CHECK id >= 0) "
               "ENGINE = MergeTree ORDER BY tuple()")
        async with destination.transaction() as tx:
            await tx.run_ddl(ddl.format(f"{quote(self.database())}.{quote('refusals')}"))
        return Refusal("refusals", [{"id": 10, "name": "first"}],
                       [{"id": 2, "name": "two"}, {"id": -1, "name": "negative"}, {"id": 3, "name": "three"}], 1)

    def database(self) -> str:
        return self.config().database


class TestClickHouseEmbeddedContract(_ClickHouseContract):
    def config(self) -> ClickHouseDestinationConfig:
        pytest.importorskip("chdb")
        return ClickHouseDestinationConfig(name="d", type="clickhouse", path=str(self.tmp_path / "chdb"),
                                           database="contract")


@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_URL"), reason="no ClickHouse server: set CLICKHOUSE_URL")
class TestClickHouseServerContract(_ClickHouseContract):
    def config(self) -> ClickHouseDestinationConfig:
        pytest.importorskip("clickhouse_connect")
        if not hasattr(self, "_database"):
            self._database = f"conduitd_test_{uuid.uuid4().hex[:12]}"
        return ClickHouseDestinationConfig(name="d", type="clickhouse", url=os.environ["CLICKHOUSE_URL"],
                                           database=self._database)

    def secret_cases(self) -> list[SecretCase]:
        if os.environ["CLICKHOUSE_URL"].startswith("chdb:"):
            return []  # clickhouse-connect's chdb backend (no server, no login): nothing secret to leak
        secret = "s3cr3t-" + uuid.uuid4().hex
        config = ClickHouseDestinationConfig(name="d", type="clickhouse", url=os.environ["CLICKHOUSE_URL"],
                                             user=f"nobody_{uuid.uuid4().hex[:8]}", password=secret,
                                             database="default")
        return [SecretCase(lambda: ClickHouseDestination(config), secret)]
