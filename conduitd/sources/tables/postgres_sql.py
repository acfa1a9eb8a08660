"""The keyset SQL of a PostgreSQL read: the plan's columns (as text COPY writes exactly), then as
hidden text columns those of the cursor and key whose COPY text is not their `::text` form (the
others' own text is their position), after the last position, below the bound, in key order.
Values travel as text parameters cast on the server to the column's own type: nothing is rounded.
Each cast is a scalar subquery, evaluated once: a cast that depends on a setting (text to
timestamptz) is not folded into a constant, and inside the keyset's row comparison, which filters
every row the index scan passes, it would run once per row (0.2-0.3 CPU s per million rows)."""

from __future__ import annotations

from typing import Any

from conduitd.sources.tables.catalog import SourceColumn, quote
from conduitd.sources.tables.cursor import Plan, window_of

_UNBOUNDED = {"character": "bpchar"}
"""A query's columns come without their length, and `character` alone is `character(1)`: a
position cast to it would be cut short (and read again forever)."""


def select_sql(plan: Plan, after: dict[str, Any] | None, bound: str | None, limit: int) -> tuple[str, list[str]]:
    """(SQL, arguments) of the next rows after position `after` below `bound`."""
    def ref(column: SourceColumn) -> str:
        return f"conduitd_src.{quote(column.name)}"

    hidden = [f"({ref(c)})::text AS conduitd_hidden_{i}" for i, (c, _) in enumerate(hidden_columns(plan))]
    exprs = [c.select(ref(c)) for c in plan.columns] + hidden
    where: list[str] = []
    args: list[str] = []

    def arg(value: str, column: SourceColumn) -> str:
        args.append(value)
        return f"(SELECT (${len(args)}::text)::{_UNBOUNDED.get(column.sql_type, column.sql_type)})"

    order = _ordered(plan)
    if plan.cursor is not None:
        where.append(f"{ref(plan.cursor)} IS NOT NULL")
        last = (after or {}).get("cursor")
        last_key = (after or {}).get("key")
        window = window_of(after)
        if last is not None and last_key is not None:
            left = ", ".join(ref(c) for c in order)
            right = ", ".join(arg(v, c) for v, c in zip([last, *last_key], order, strict=True))
            where.append(f"({left}) > ({right})")
        elif last is not None or (plan.initial is not None and window is None):
            start = str(last if last is not None else plan.initial)
            where.append(f"{ref(plan.cursor)} > {arg(start, plan.cursor)}")
        if window is not None:  # the lag window below the high water `upto`, read again
            upto, lag = window
            top = ", ".join(arg(v, c) for v, c in zip([upto["cursor"], *upto["key"]], order, strict=True))
            where.append(f"({', '.join(ref(c) for c in order)}) <= ({top})")
            high = arg(str(upto["cursor"]), plan.cursor)
            args.append(str(lag))
            where.append(f"{ref(plan.cursor)} >= {high} - (SELECT make_interval(secs => (${len(args)}::text)::float8))")
            if plan.initial is not None:
                where.append(f"{ref(plan.cursor)} > {arg(str(plan.initial), plan.cursor)}")
        if bound is not None:
            if plan.strategy == "timestamp":
                where.append(f"{ref(plan.cursor)} < (SELECT (${len(args) + 1}::text)::timestamptz)")
            elif plan.strategy == "xid":
                where.append(f"{ref(plan.cursor)} < (SELECT (${len(args) + 1}::text)::xid8)")
            else:
                where.append(f"{ref(plan.cursor)} <= (SELECT (${len(args) + 1}::text)::{plan.cursor.sql_type})")
            args.append(bound)
    else:
        last_key = (after or {}).get("key")
        if last_key is not None:
            left = ", ".join(ref(c) for c in order)
            right = ", ".join(arg(v, c) for v, c in zip(last_key, order, strict=True))
            where.append(f"({left}) > ({right})")
    sql = (f"SELECT {', '.join(exprs)} FROM {plan.source} AS conduitd_src"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY {', '.join(ref(c) for c in order)} LIMIT {int(limit)}")
    return sql, args


def _ordered(plan: Plan) -> list[SourceColumn]:
    return ([plan.cursor] if plan.cursor else []) + list(plan.key)


def hidden_columns(plan: Plan) -> list[tuple[SourceColumn, str]]:
    """(column, decoded name) of the hidden text columns the SQL adds after the plan's columns."""
    names = plan.hidden_names
    return [(c, names[i]) for i, c in enumerate(_ordered(plan)) if not c.copies_as_text]


def position_names(plan: Plan) -> list[str]:
    """Per cursor and key column, the decoded column whose texts are its positions: its own, or
    its hidden text column."""
    names = plan.hidden_names
    return [c.name if c.copies_as_text else names[i] for i, c in enumerate(_ordered(plan))]
