"""The pure parts of MariaDB/MySQL log capture: binlog values as server text (exact, or a reason),
binlog coordinates, the server-settings check and changes into Arrow with the delete mask."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa

from conduitd.sources.mysqllog.position import Coordinate, bytes_behind, coordinate, log_position
from conduitd.sources.mysqllog.reader import Row
from conduitd.sources.mysqllog.rows import to_rows
from conduitd.sources.mysqllog.server import missing_settings
from conduitd.sources.mysqllog.values import as_text, row_texts, time_text, true_time
from conduitd.sources.tables.mysql_catalog import column


def test_values_become_the_servers_text() -> None:
    assert as_text(Decimal("1E+2")) == "100"
    assert as_text(Decimal("-0.001")) == "-0.001"
    assert as_text(1.100000023841858) == "1.100000023841858"
    assert as_text(dt.datetime(2024, 1, 2, 3, 4, 5, 678000)) == "2024-01-02 03:04:05.678000"
    assert as_text(dt.date(2024, 1, 2)) == "2024-01-02"
    assert as_text({"b", "a"}, SimpleNamespace(type=248, set_values=["a", "b", "c"])) == "a,b"
    assert as_text("101", SimpleNamespace(type=16)) == "5"
    assert as_text(1900, SimpleNamespace(type=13)) == "0"  # the zero YEAR
    assert as_text({"k": [1, 2]}) == '{"k":[1,2]}'
    assert as_text(b"\x00\xff") == b"\x00\xff"


def test_a_time_keeps_its_sign_hours_and_fraction() -> None:
    assert time_text(dt.timedelta(hours=838, minutes=59, seconds=59), 0) == "838:59:59"
    assert time_text(-dt.timedelta(hours=12, minutes=34, seconds=56, microseconds=780000), 2) == "-12:34:56.78"
    # mysql-replication 1.0 reads -12:34:56.78 as -(12:34:57) + 0.78 and -00:00:01.01 as -1.99 s
    assert true_time(dt.timedelta(seconds=-45297) + dt.timedelta(microseconds=780000)) == \
        -dt.timedelta(seconds=45296, microseconds=780000)
    assert true_time(dt.timedelta(seconds=-1.99)) == -dt.timedelta(seconds=1.01)
    assert true_time(dt.timedelta(seconds=-0.5)) == dt.timedelta(seconds=-0.5)
    assert true_time(dt.timedelta(seconds=-5)) == dt.timedelta(seconds=-5)
    assert as_text(dt.timedelta(seconds=-1.99), SimpleNamespace(type=19, fsp=2)) == "-00:00:01.01"


def test_an_undecodable_value_is_a_reason_not_a_null() -> None:
    values, problem = row_texts({"id": 1, "d": None, "s": None, "n": None},
                                {"d": "out of date range", "s": "empty set", "n": "null"}, [])
    assert values == {"id": "1", "d": None, "s": "", "n": None}
    assert "'d'" in problem and "out of date range" in problem
    _, unnamed = row_texts({"UNKNOWN_COL0": 1}, {}, [])
    assert "binlog_row_metadata=FULL" in unnamed


def test_coordinates_order_by_file_number_then_offset() -> None:
    assert Coordinate("binlog.000999", 900) < Coordinate("binlog.1000000", 4)
    assert Coordinate("binlog.000002", 4) <= Coordinate("binlog.000002", 4)
    assert coordinate(log_position(Coordinate("b.000001", 10), "0-1-2", done=3)) == Coordinate("b.000001", 10)
    assert log_position(Coordinate("b.000001", 10), None) == {"phase": "log", "file": "b.000001", "pos": 10,
                                                              "gtid": None}
    logs = [("b.000001", 100), ("b.000002", 50)]
    assert bytes_behind(Coordinate("b.000001", 60), logs) == 90
    assert bytes_behind(Coordinate("b.000000", 60), logs) is None  # purged


def test_each_wrong_setting_says_what_to_set() -> None:
    assert "the binary log is off" in missing_settings({"log_bin": "OFF"})[0]
    wrong = missing_settings({"log_bin": "ON", "binlog_format": "MIXED", "binlog_row_image": "FULL",
                              "binlog_row_metadata": "MINIMAL"})
    assert len(wrong) == 2 and "binlog_format = ROW" in wrong[0] and "binlog_row_metadata = FULL" in wrong[1]


def test_changes_become_typed_rows_with_the_delete_mask_and_rejects() -> None:
    at = Coordinate("b.000001", 4)
    columns = [column("id", "int", "int(11)"), column("amount", "decimal", "decimal(10,2)"),
               column("raw", "varbinary", "varbinary(8)"), column("note", "text", "text")]
    changes = [Row({"id": "1", "amount": "12.50", "raw": b"\x01", "note": "x"}, False, "", at, 0),
               Row({"id": "2"}, True, "", at, 0),  # a delete carries its key
               Row({"id": "3", "amount": "1.5", "raw": None}, False, "column 'd': bad", at, 0),
               Row({"id": "4", "amount": "99999999999"}, False, "", at, 0),  # does not fit decimal(10,2)
               Row({"id": "5", "gone": "?"}, False, "", at, 0)]
    read = to_rows(changes, columns, "db.t", None)
    assert read.table.column("id").to_pylist() == [1, 2]
    assert read.table.schema.field("amount").type == pa.decimal128(10, 2)
    assert read.table.column("amount").to_pylist() == [Decimal("12.50"), None]
    assert read.deletes is not None and read.deletes.tolist() == [False, True]
    reasons = sorted(r.reason for r in read.rejects)
    assert len(reasons) == 3 and any("'gone'" in r for r in reasons) and "column 'd': bad" in reasons
