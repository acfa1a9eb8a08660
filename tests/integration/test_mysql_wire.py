"""The MySQL/MariaDB source's row reader (`mysql_wire`) against the real server: what it takes from
the receive buffer is, value for value, what asyncmy itself reads from the same result, through
every length encoding, values split over several reads of the socket and a row of 16 MB that the
protocol sends as two packets."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

if os.environ.get("CONDUITD_REQUIRE_SERVICES") != "1":
    pytest.importorskip("asyncmy")
import asyncmy
from asyncmy.cursors import SSCursor

from conduitd.sources.tables.mysql import _decoders_off
from conduitd.sources.tables.mysql_wire import read_rows, wire_readable
from tests.conftest import require_or_skip

HOST, _, PORT = os.environ.get("CONDUITD_TEST_MYSQL", "127.0.0.1:3306").partition(":")
SIZES = [0, 1, 250, 251, 252, 65535, 65536, 300_000, 16_777_200]
"""Value lengths: each length encoding's edges, one value longer than a socket read, and one that
makes its row a packet of 16 MB or more (the default max_allowed_packet still lets it through)."""


async def connect() -> Any:
    try:
        return await asyncmy.connect(host=HOST, port=int(PORT or 3306), user="root", password="",
                                     charset="utf8mb4", autocommit=True, conv=_decoders_off(), connect_timeout=5)
    except (OSError, TimeoutError, asyncmy.errors.MySQLError) as exc:
        require_or_skip(f"MariaDB/MySQL is not reachable at {HOST}: {exc}")
        raise


async def run(conn: Any, sql: str) -> None:
    async with conn.cursor() as cursor:
        await cursor.execute(sql)


async def test_the_rows_read_from_the_wire_are_asyncmys_own_value_for_value() -> None:
    conn = await connect()
    database = f"conduitd_wire_{uuid.uuid4().hex[:8]}"
    await run(conn, f"CREATE DATABASE `{database}`")
    try:
        await run(conn, f"USE `{database}`")
        await run(conn, f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, note LONGTEXT, raw LONGBLOB, "
                        "amount DECIMAL(65,30), at DATETIME(6))")
        for i, size in enumerate(SIZES):
            note = "CONCAT('tab\\there\\nnul\\0 ☃ 𝄞 \\\\', " + f"REPEAT('x', {max(0, size - 40)}))"
            raw = "NULL" if i % 3 == 2 else f"REPEAT(x'00ff0a09', {size // 4})"
            await run(conn, f"INSERT INTO `{database}`.t VALUES ({i}, {note if i % 4 != 3 else 'NULL'}, {raw}, "
                            f"{i}.{'1' * 30}, '2026-11-30 04:05:06.{i:06d}')")
        await run(conn, f"INSERT INTO `{database}`.t VALUES ({len(SIZES)}, '', x'', NULL, NULL)")
        await run(conn, f"INSERT INTO `{database}`.t SELECT seq, CONCAT('n', seq), NULL, seq / 7, NULL "
                        f"FROM seq_{len(SIZES) + 1}_to_3000")  # many small rows: many packets per socket read
        sql = f"SELECT id, note, raw, amount, at FROM `{database}`.t ORDER BY id"
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
            want = [tuple(v.encode() if isinstance(v, str) else v for v in row) for row in await cursor.fetchall()]
        assert wire_readable(conn), "asyncmy's internals moved: mysql_wire reads through the slow path"
        cursor = conn.cursor(SSCursor)
        await cursor.execute(sql)
        got = await read_rows(conn, cursor, 5)
        await cursor.close()
        cursor = conn.cursor(SSCursor)
        await cursor.execute(sql)
        fallback = await read_rows(conn, cursor, 5, from_wire=False)  # without the internals
        await cursor.close()
        assert [c.to_pylist() for c in fallback.columns()] == [c.to_pylist() for c in got.columns()]
        assert len(got) == len(want) == 3001
        columns = [c.to_pylist() for c in got.columns()]
        assert list(zip(*columns, strict=True)) == want
        assert [got.row(i) for i in range(len(SIZES) + 2)] == want[:len(SIZES) + 2]
        assert len(want[len(SIZES) - 1][1]) == 16_777_200 - 16  # its row is more than one packet
        async with conn.cursor() as cursor:  # the connection reads on after the result's end
            await cursor.execute("SELECT 1")
            assert await cursor.fetchall() == (("1",),)
    finally:
        await run(conn, f"DROP DATABASE `{database}`")
        conn.close()
