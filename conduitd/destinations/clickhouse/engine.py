"""The two ways of reaching ClickHouse, behind one small synchronous interface the destination
calls from a worker thread (one call at a time): chdb in the process (`path`) and a server's
HTTP interface through clickhouse-connect (`url`). Drivers are imported when an engine opens;
their errors leave as they are (`errors.translate` runs in the destination)."""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa

from conduitd.destinations.clickhouse.settings import ClickHouseDestinationConfig


class Engine(Protocol):
    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, DELETE, INSERT ... VALUES)."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a query as Python values."""

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert `data` (named like the target's columns) into `table` (qualified, quoted) as ONE
        block: ClickHouse makes one block insert into a MergeTree table atomic."""

    def close(self) -> None: ...


class ChdbEngine:
    """chdb, embedded: a connection to the database directory `path`."""

    def __init__(self, path: str) -> None:
        try:
            import chdb
        except ImportError as exc:
            raise ImportError("the embedded ClickHouse destination needs chdb: "
                              "pip install 'conduitd[clickhouse]'") from exc
        connect: Any = chdb.connect
        self._conn: Any = connect(path)

    def command(self, sql: str) -> None:
        self._conn.query(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        result = self._conn.query(sql, "ArrowStream")
        data = result.bytes()
        if not data:
            return []
        table = pa.ipc.open_stream(data).read_all()
        return [tuple(r.values()) for r in table.to_pylist()]

    def insert(self, table: str, data: pa.Table) -> None:
        names = ", ".join("`" + n.replace("\\", "\\\\").replace("`", "\\`") + "`" for n in data.column_names)
        # chdb's Python() table function reads the variable of this name in the caller's frame.
        conduitd_block = data  # noqa: F841 - read by name by chdb
        self._conn.query(f"INSERT INTO {table} ({names}) SELECT * FROM Python(conduitd_block)")

    def close(self) -> None:
        self._conn.close()


class HttpEngine:
    """A ClickHouse server through its HTTP interface (clickhouse-connect)."""

    def __init__(self, config: ClickHouseDestinationConfig) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise ImportError("the ClickHouse server destination needs clickhouse-connect: "
                              "pip install 'conduitd[clickhouse]'") from exc
        password = config.password.get_secret_value() if config.password is not None else ""
        self._client: Any = clickhouse_connect.get_client(
            dsn=config.url, username=config.user, password=password,
            connect_timeout=int(max(1, config.connect_timeout)), autogenerate_session_id=False)

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._client.query(sql).result_rows]

    def insert(self, table: str, data: pa.Table) -> None:
        # The table is qualified and quoted already: clickhouse-connect adds nothing to it.
        self._client.raw_insert(table, data.column_names, _arrow_stream(data), fmt="ArrowStream")

    def close(self) -> None:
        self._client.close()


def _arrow_stream(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue().to_pybytes())


def open_engine(config: ClickHouseDestinationConfig) -> Engine:
    """The engine the config names (see the module docstring)."""
    if config.path is not None:
        return ChdbEngine(config.path)
    return HttpEngine(config)
