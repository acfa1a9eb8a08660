"""A SQLite REAL column keeps no negative zero (-0.0 reads back as 0.0: SQLite writes integral
reals as integers) and no NaN (NULL): a row holding one is refused by name when the rows are sent,
for the DLQ, and every other float is stored exactly (issue 8, item 2: JSON -0.0 became 0.0)."""

from __future__ import annotations

import math
import sqlite3
import struct

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.destinations.base import RowsRefused
from conduitd.destinations.sqlite.dialect import SqliteDialect

FLOATS = st.floats(allow_infinity=True) | st.sampled_from([-0.0, 0.0, float("nan")]) | st.none()


def bits(value: float | None) -> bytes | None:
    return None if value is None else struct.pack("<d", value)


def write_like_the_writer(db: sqlite3.Connection, rows: pa.Table) -> list[int]:
    """What the SQLite writer and the isolation do: send the encoded rows; a refused one is
    dead-lettered and the rest sent again (rows here are independent: no rollback needed)."""
    dialect = SqliteDialect()
    columns = [dialect.column_for(name, rows.schema.field(name).type) for name in rows.column_names]
    refused: list[int] = []
    offset = 0
    while offset < rows.num_rows:
        rest = rows.slice(offset)
        try:
            db.executemany("INSERT INTO t VALUES (?, ?)", dialect.encode(rest, columns))
            break
        except RowsRefused as exc:  # the rows before it were sent
            assert exc.row is not None
            refused.append(offset + exc.row)
            offset += exc.row + 1
    return refused


@settings(max_examples=200)
@given(st.lists(FLOATS, min_size=1, max_size=12))
def test_only_floats_a_real_column_would_alter_are_refused_and_the_rest_read_back_bit_for_bit(
        values: list[float | None]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER, x REAL)")
    rows = pa.table({"id": pa.array(range(len(values)), pa.int64()), "x": pa.array(values, pa.float64())})
    refused = write_like_the_writer(db, rows)
    altered = [i for i, v in enumerate(values) if v is not None and (math.isnan(v) or (v == 0 and
                                                                                       math.copysign(1, v) < 0))]
    assert refused == altered
    stored = dict(db.execute("SELECT id, x FROM t"))
    assert sorted(stored) == [i for i in range(len(values)) if i not in altered]
    assert all(bits(stored[i]) == bits(values[i]) for i in stored)


def test_the_refusal_names_the_column_and_why() -> None:
    dialect = SqliteDialect()
    rows = pa.table({"x": pa.array([1.5, -0.0, float("nan")])})
    encoded = dialect.encode(rows, [dialect.column_for("x", pa.float64())])
    with pytest.raises(RowsRefused) as caught:
        list(iter(encoded))
    assert caught.value.row == 1
    assert caught.value.reason == ("column 'x': SQLite cannot keep -0.0 (a negative zero) in a REAL column: it "
                                   "would read back as 0.0")


def test_sqlite_itself_cannot_keep_a_negative_zero_in_a_real_column() -> None:
    """The evidence for refusing: every way of sending -0.0 to a REAL column reads back 0.0 (a
    column without affinity keeps it, but conduitd gives floats REAL columns)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x REAL, y)")
    for sent in (-0.0, "-0.0", "-0", "-0e0"):
        db.execute("INSERT INTO t VALUES (?, ?)", (sent, -0.0))
    for x, y in db.execute("SELECT x, y FROM t"):
        assert math.copysign(1, x) == 1 and math.copysign(1, y) == -1
