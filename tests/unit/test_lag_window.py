"""The lag window's memory (pure): rows and rejects handed over once per process, forgotten on a
resync, rows below the window pruned; its reads' `after` and keyset SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from conduitd.core.records import Reject
from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.cursor import Plan, window_of
from conduitd.sources.tables.lag_window import LagWindow
from conduitd.sources.tables.mysql_sql import select_sql as mysql_select
from conduitd.sources.tables.postgres_sql import select_sql as postgres_select

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def table(*rows: tuple[int, datetime]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC"))})


def test_rows_and_rejects_are_handed_over_once_until_a_resync() -> None:
    window = LagWindow(60, "ts", ["id"])
    window.note(table((1, T0), (2, T0 + timedelta(seconds=10))))
    bad = Reject("p", {"cursor": "x", "key": ["9"]}, "bad", "{}")
    window.start()
    rows, rejects = window.fresh(table((1, T0), (3, T0 + timedelta(seconds=5)), (2, T0 + timedelta(seconds=10))),
                                 [bad])
    assert rows.column("id").to_pylist() == [3] and rejects == [bad]
    rows, rejects = window.fresh(table((3, T0 + timedelta(seconds=5))), [bad])
    assert rows.num_rows == 0 and rejects == []
    window.clear()
    rows, rejects = window.fresh(table((3, T0 + timedelta(seconds=5))), [bad])
    assert rows.num_rows == 1 and rejects == [bad]


def test_rows_below_the_window_are_forgotten_and_the_sweep_advances() -> None:
    window = LagWindow(60, "ts", ["id"])
    window.note(table((1, T0), (2, T0 + timedelta(seconds=100))))
    window.start()
    assert window.after({"cursor": "c", "key": ["2"], "lease": 7}) == {"upto": {"cursor": "c", "key": ["2"]},
                                                                        "lag": 60}
    assert window.fresh(table((1, T0)), [])[0].num_rows == 1  # out of the window: not remembered any more
    window.advance(["c1", "1"], caught_up=False)
    assert window.after({"cursor": "c", "key": ["2"]})["cursor"] == "c1"
    window.advance(["c2", "2"], caught_up=True)
    assert window.sweep is None


def test_the_window_reads_between_the_floor_and_the_high_water() -> None:
    ts, key = SourceColumn("ts", "timestamp with time zone", "timestamp"), SourceColumn("id", "integer", "integer")
    plan = Plan('"s"."t"', [key, ts], [key], ts, "timestamp")
    after = {"upto": {"cursor": "2026-01-01 00:00:00+00", "key": ["5"]}, "lag": 30.0}
    assert window_of(after) == (after["upto"], 30.0) and window_of({"cursor": "c", "key": []}) is None
    sql, args = postgres_select(plan, after, "b", 10)
    assert '(conduitd_src."ts", conduitd_src."id") <= ' in sql
    assert "(SELECT make_interval(secs => ($4::text)::float8))" in sql and args == [
        "2026-01-01 00:00:00+00", "5", "2026-01-01 00:00:00+00", "30.0", "b"]
    mysql_plan = Plan("`s`.`t`", [SourceColumn("id", "int", "int"), SourceColumn("ts", "datetime(6)", "datetime")],
                      [SourceColumn("id", "int", "int")], SourceColumn("ts", "datetime(6)", "datetime"), "timestamp")
    sql, args = mysql_select(mysql_plan, after, "1.5", 10)
    assert "NOT (" in sql and "INTERVAL CAST(%s AS SIGNED) MICROSECOND" in sql and "30000000" in args


def test_every_position_value_is_cast_once_in_a_scalar_subquery() -> None:
    """A text-to-timestamptz cast depends on a setting, so PostgreSQL does not fold it: written in
    the keyset's row comparison it ran for every row the index scan passed (~0.3 CPU s per
    million rows). Each parameter is cast inside its own scalar subquery, evaluated once."""
    ts, key = SourceColumn("ts", "timestamp with time zone", "timestamp"), SourceColumn("id", "integer", "integer")
    plan = Plan('"s"."t"', [key, ts], [key], ts, "timestamp", "2025-01-01 00:00:00+00")
    for after in ({"cursor": "2026-01-01 00:00:00+00", "key": ["5"]}, None,
                  {"upto": {"cursor": "2026-01-01 00:00:00+00", "key": ["5"]}, "lag": 30.0}):
        sql, args = postgres_select(plan, after, "2026-02-01 00:00:00+00", 10)
        uses = [sql[:m.start()] for m in re.finditer(r"\$\d+::text", sql)]
        assert len(uses) == len(args) > 1
        assert all(u.endswith(("(SELECT (", "(SELECT make_interval(secs => (")) for u in uses), sql
