"""`conduitd run --once` from files into MySQL/MariaDB (the server of `test_contract_mysql`), each
test in a database of its own: append and upsert, a malformed line and a refused row in the DLQ
while the rest commits, nothing written twice, schema evolution, hostile identifiers, a wrong
password."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import write_config
from tests.helpers.inprocess import Cli, in_process_cli
from tests.integration.test_contract_mysql import HOST, PORT, mysql_database, mysql_server, quoted, sql

__all__ = ["mysql_database", "mysql_server"]  # fixtures shared with the contract test

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("asyncmy")  # the `mysql` extra; under the test script it must be installed


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield from in_process_cli(capsys)


def config(tmp_path: Path, database: str, data: Path, **pipeline: Any) -> str:
    destination: dict[str, Any] = {"name": "my", "type": "mysql", "host": HOST, "port": int(PORT or 3306),
                                   "user": "root", "database": database, "connect_timeout": 3}
    destination.update(pipeline.pop("destination", {}))
    return str(write_config(tmp_path / "conduitd.yaml", {
        "service": {"once_retry_timeout": "1s", "retry_max_wait": "200ms"},
        "sources": [{"name": "files", "type": "file", "path": str(data)}],
        "destinations": [destination],
        "resources": [{"name": "orders", "source": "files", "destination": "my", "table": "orders", **pipeline}],
    }))


def rows(database: str, table: str, order: str = "id") -> list[dict[str, Any]]:
    return asyncio.run(sql(f"SELECT * FROM {quoted(database)}.{quoted(table)} ORDER BY {quoted(order)}"))


def test_append_dead_letters_a_malformed_line_and_a_refused_row_and_commits_the_rest(
        cli: Cli, tmp_path: Path, mysql_database: str) -> None:
    asyncio.run(sql(f"CREATE DATABASE {quoted(mysql_database)}"))
    asyncio.run(sql(f"CREATE TABLE {quoted(mysql_database)}.orders (id BIGINT PRIMARY KEY, name VARCHAR(10), "
                    "amount DECIMAL(10,2))"))
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "name": "a", "amount": 1.10}\n{not json\n{"id": 2, "name": "b", "amount": 2.25}\n'
                    '{"id": 1, "name": "again", "amount": 3}\n{"id": 3, "name": "naïve ☃", "amount": null}\n'
                    '{"id": 4, "name": "far too long for ten", "amount": 4}\n')
    code, out, err = cli("run", "--once", "-c", config(tmp_path, mysql_database, data))
    assert code == 0, out + err
    assert [(r["id"], r["name"], r["amount"] and str(r["amount"])) for r in rows(mysql_database, "orders")] == [
        (1, "a", "1.10"), (2, "b", "2.25"), (3, "naïve ☃", None)]
    dlq = rows(mysql_database, "orders_dlq")
    assert [d["rule"] for d in dlq] == ["decode", "refused", "refused"]
    assert "1062" in dlq[1]["reason"] and "again" in dlq[1]["payload"]
    assert "1406" in dlq[2]["reason"] and "far too long" in dlq[2]["payload"]
    # A second run finds everything committed: nothing is written again.
    code, out, err = cli("run", "--once", "-c", config(tmp_path, mysql_database, data))
    assert code == 0, out + err
    assert len(rows(mysql_database, "orders")) == 3 and len(rows(mysql_database, "orders_dlq")) == 3


def test_upsert_merges_by_key_and_a_new_column_is_added(cli: Cli, tmp_path: Path, mysql_database: str) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "v": "a"}\n{"id": 2, "v": "b"}\n{"id": 1, "v": "a2"}\n')
    path = config(tmp_path, mysql_database, data, mode="upsert", unique_key=["id"])
    assert cli("run", "--once", "-c", path)[0] == 0
    assert [(r["id"], r["v"]) for r in rows(mysql_database, "orders")] == [(1, "a2"), (2, "b")]
    with data.open("a") as handle:
        handle.write('{"id": 2, "v": "b2", "added": 2.5}\n{"id": 3, "v": "c", "added": null}\n')
    code, out, err = cli("run", "--once", "-c", path)
    assert code == 0, out + err
    assert [(r["id"], r["v"], r["added"]) for r in rows(mysql_database, "orders")] == [
        (1, "a2", None), (2, "b2", 2.5), (3, "c", None)]
    history = rows(mysql_database, "conduitd_schema_history")
    assert [(h["change"], h["column_name"]) for h in history] == [("create", None), ("add", "added")]
    columns = asyncio.run(sql("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                              "AND TABLE_NAME = 'orders' ORDER BY ORDINAL_POSITION", (mysql_database,)))
    assert [(c["COLUMN_NAME"], c["COLUMN_TYPE"]) for c in columns] == [
        ("id", "bigint(20)"), ("v", "longtext"), ("added", "double")]


def test_identifiers_with_backticks_spaces_and_unicode_are_quoted(cli: Cli, tmp_path: Path,
                                                                  mysql_database: str) -> None:
    table = "we`ird tåble; DROP"
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "a`b": "x", "with space": "y", "ünï ☃": "z", "%s": "p"}\n')
    code, out, err = cli("run", "--once", "-c", config(tmp_path, mysql_database, data, table=table, mode="upsert",
                                                         unique_key=["id"]))
    assert code == 0, out + err
    assert rows(mysql_database, table) == [{"id": 1, "a`b": "x", "with space": "y", "ünï ☃": "z", "%s": "p"}]


def test_a_wrong_password_stops_with_a_message_that_never_shows_it(cli: Cli, tmp_path: Path,
                                                                   mysql_database: str) -> None:
    secret = f"Wrong-{uuid.uuid4().hex[:8]}-p@ss"
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1}\n')
    code, out, err = cli("run", "--once", "-c", config(tmp_path, mysql_database, data,
                                                         destination={"password": secret}))
    assert code in (2, 5), out + err
    assert "1045" in out + err  # access denied
    assert "MySQL" in out + err and "root" in out + err
    assert secret not in out + err


def test_a_transaction_cancelled_mid_statement_rolls_back_and_the_next_one_connects_again(
        mysql_database: str) -> None:
    from conduitd.destinations.mysql.transaction import MysqlTransaction
    from tests.integration.test_contract_mysql import destination, mysql_dsn

    async def work() -> None:
        dest: Any = destination(mysql_dsn(mysql_database))
        await dest.open()
        try:
            await dest.driver.run(f"CREATE TABLE {quoted(mysql_database)}.t (id BIGINT PRIMARY KEY)")

            inserted = asyncio.Event()

            async def cut_off() -> None:
                async with dest.transaction() as tx:
                    assert isinstance(tx, MysqlTransaction)
                    await dest.driver.run(f"INSERT INTO {quoted(mysql_database)}.t VALUES (1)")
                    inserted.set()  # this task's next suspension is awaiting the reply below
                    await dest.driver.fetch("SELECT SLEEP(30)")  # cancelled while the server runs it

            task = asyncio.ensure_future(cut_off())
            await inserted.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with dest.transaction():
                await dest.driver.run(f"INSERT INTO {quoted(mysql_database)}.t VALUES (2)")
            assert [r[0] for r in await dest.driver.fetch(f"SELECT id FROM {quoted(mysql_database)}.t")] == [2]
        finally:
            await dest.close()
    asyncio.run(work())
