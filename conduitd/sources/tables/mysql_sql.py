"""The SQL of a MySQL/MariaDB read: the keyset SELECT after a position and below the late-commit
bound, and the bound's own statements.

Keyset: the row comparison `(c1, c2) > (v1, v2)` is exact in MySQL but neither MySQL nor MariaDB
(10.11, checked with EXPLAIN: a full scan and a filesort) turns it into an index range, so it is
written out as `c1 >= v1 AND (c1 > v1 OR (c1 = v1 AND c2 > v2))`: the leading `c1 >= v1` is the
range on the cursor's index (InnoDB's secondary indexes end with the primary key, so `ORDER BY
cursor, key` follows the index without a sort). Position values travel as text parameters cast to
the column's own type (`mysql_catalog.parameter`): a string compared with a number would be
compared as a double, which rounds a BIGINT or a DECIMAL.

The bound is a Unix time (seconds, microsecond text), compared as a UTC time with a TIMESTAMP
column and as the server's default time zone's wall time with a DATETIME column (what `NOW()`
writes into it in a session that kept the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conduitd.sources.tables.catalog import SourceColumn
from conduitd.sources.tables.cursor import Plan, window_of
from conduitd.sources.tables.mysql_catalog import parameter, quote, select

ALIAS = "conduitd_src"
UNSET_ID = 281474976710655
"""Largest real InnoDB transaction id (2^48 - 1): MySQL shows a transaction that has not written
with a made-up id above it, MariaDB with 0."""

OLDEST_WRITER_SQL = f"""
SELECT UNIX_TIMESTAMP(NOW(6)), UNIX_TIMESTAMP(CONVERT_TZ(o.trx_started, 'SYSTEM', '+00:00')),
       o.trx_mysql_thread_id, o.trx_id
FROM (SELECT 1 AS one) AS base LEFT JOIN (
    SELECT trx_started, trx_mysql_thread_id, trx_id FROM information_schema.INNODB_TRX
    WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_is_read_only = 0
      AND CAST(trx_id AS UNSIGNED) BETWEEN 1 AND {UNSET_ID}
    ORDER BY trx_started LIMIT 1) AS o ON 1"""
"""(now, start of the oldest other transaction that writes, its thread id, its id), as Unix times.
`trx_started` is the server's system-time-zone wall time, in whole seconds."""


def ref(col: SourceColumn) -> str:
    return f"{ALIAS}.{quote(col.name)}"


def largest_sql(plan: Plan) -> str:
    """(now, the cursor's largest value) of a sequential read."""
    assert plan.cursor is not None
    return f"SELECT UNIX_TIMESTAMP(NOW(6)), MAX({ref(plan.cursor)}) FROM {plan.source} AS {ALIAS}"


def after(columns: Sequence[SourceColumn], values: Sequence[str]) -> tuple[str, list[str]]:
    """`(columns) > (values)`, written out so the first column's index gives the range."""
    refs = [ref(c) for c in columns]
    marks = [parameter(c) for c in columns]
    n = len(columns)
    sql, args = f"{refs[-1]} > {marks[-1]}", [values[-1]]
    for i in range(n - 2, -1, -1):
        sql = f"{refs[i]} > {marks[i]} OR ({refs[i]} = {marks[i]} AND ({sql}))"
        args = [values[i], values[i], *args]
    if n > 1:
        sql = f"{refs[0]} >= {marks[0]} AND ({sql})"
        args = [values[0], *args]
    return f"({sql})", args


def select_sql(plan: Plan, position: dict[str, Any] | None, bound: str | None, limit: int) -> tuple[str, list[str]]:
    """(SQL, arguments) of the next `limit` rows after `position`, below `bound`, in key order.
    The columns come as the plan lists them; the cursor and key are among them."""
    exprs = [select(c, ref(c)) for c in plan.columns]
    where: list[str] = []
    args: list[str] = []
    order = ([plan.cursor] if plan.cursor else []) + list(plan.key)
    last_key = (position or {}).get("key")
    if plan.cursor is not None:
        where.append(f"{ref(plan.cursor)} IS NOT NULL")
        last = (position or {}).get("cursor")
        window = window_of(position)
        if last is not None and last_key is not None:
            sql, values = after(order, [str(last), *map(str, last_key)])
            where.append(sql)
            args += values
        elif last is not None or (plan.initial is not None and window is None):
            where.append(f"{ref(plan.cursor)} > {parameter(plan.cursor)}")
            args.append(str(last if last is not None else plan.initial))
        if window is not None:  # the lag window below the high water `upto`, read again
            upto, lag = window
            sql, values = after(order, [str(upto["cursor"]), *map(str, upto["key"])])
            where += [f"NOT {sql}",
                      f"{ref(plan.cursor)} >= {parameter(plan.cursor)} - INTERVAL CAST(%s AS SIGNED) MICROSECOND"]
            args += [*values, str(upto["cursor"]), str(round(lag * 1_000_000))]
            if plan.initial is not None:
                where.append(f"{ref(plan.cursor)} > {parameter(plan.cursor)}")
                args.append(str(plan.initial))
        if bound is not None:
            where.append(bound_clause(plan.cursor, plan.strategy))
            args.append(bound)
    elif last_key is not None:
        sql, values = after(order, [str(v) for v in last_key])
        where.append(sql)
        args += values
    sql = (f"SELECT {', '.join(exprs)} FROM {plan.source} AS {ALIAS}"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY {', '.join(ref(c) for c in order)} LIMIT {int(limit)}")
    return sql, args


def bound_clause(cursor: SourceColumn, strategy: str | None) -> str:
    if strategy != "timestamp":
        return f"{ref(cursor)} <= {parameter(cursor)}"
    moment = "FROM_UNIXTIME(CAST(%s AS DECIMAL(20,6)))"  # a UTC time: the session's zone is +00:00
    if cursor.kind == "datetime":
        moment = f"CONVERT_TZ({moment}, '+00:00', @@GLOBAL.time_zone)"
    return f"{ref(cursor)} < {moment}"
