"""Positions of a database-table partition and the keyset SQL that reads after them.

Incremental: `{"cursor": text, "key": [text, ...]}`, the last row's cursor value and primary key
in PostgreSQL's own text forms (cast back on the server, so nothing is rounded); rows are read with
`(cursor, key...) > (last...) ORDER BY cursor, key... LIMIT n`, so rows sharing one cursor value
are never split badly. Whole-table reads: `{"pass": n, "key": [...] | null, "done": bool}`, the
table walked in key order once per pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conduitd.sources.tables.catalog import SourceColumn, quote


@dataclass(frozen=True)
class Plan:
    """What a pipeline reads: the FROM clause, its columns, key and cursor."""

    source: str
    """The FROM item: a quoted `schema.table` or a parenthesized query (aliased here)."""
    columns: Sequence[SourceColumn]
    key: Sequence[SourceColumn]
    cursor: SourceColumn | None
    strategy: str | None
    """timestamp, sequential, cursor; None for whole-table reads."""
    initial: str | None = None

    def select(self, after: dict[str, Any] | None, bound: str | None, limit: int) -> tuple[str, list[str]]:
        """(SQL, arguments) of the next rows after position `after` below `bound`."""
        def ref(column: SourceColumn) -> str:
            return f"conduitd_src.{quote(column.name)}"

        hidden = [f"({ref(c)})::text AS conduitd_hidden_{i}"
                  for i, c in enumerate(([self.cursor] if self.cursor else []) + list(self.key))]
        exprs = [c.select(ref(c)) for c in self.columns] + hidden
        where: list[str] = []
        args: list[str] = []

        def arg(value: str, column: SourceColumn) -> str:
            args.append(value)
            return f"(${len(args)}::text)::{column.sql_type}"

        order = ([self.cursor] if self.cursor else []) + list(self.key)
        if self.cursor is not None:
            where.append(f"{ref(self.cursor)} IS NOT NULL")
            last = (after or {}).get("cursor")
            last_key = (after or {}).get("key")
            if last is not None and last_key is not None:
                left = ", ".join(ref(c) for c in order)
                right = ", ".join(arg(v, c) for v, c in zip([last, *last_key], order, strict=True))
                where.append(f"({left}) > ({right})")
            elif last is not None or self.initial is not None:
                start = str(last if last is not None else self.initial)
                where.append(f"{ref(self.cursor)} > {arg(start, self.cursor)}")
            if bound is not None:
                if self.strategy == "timestamp":
                    where.append(f"{ref(self.cursor)} < (${len(args) + 1}::text)::timestamptz")
                else:
                    where.append(f"{ref(self.cursor)} <= (${len(args) + 1}::text)::{self.cursor.sql_type}")
                args.append(bound)
        else:
            last_key = (after or {}).get("key")
            if last_key is not None:
                left = ", ".join(ref(c) for c in order)
                right = ", ".join(arg(v, c) for v, c in zip(last_key, order, strict=True))
                where.append(f"({left}) > ({right})")
        sql = (f"SELECT {', '.join(exprs)} FROM {self.source} AS conduitd_src"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + f" ORDER BY {', '.join(ref(c) for c in order)} LIMIT {int(limit)}")
        return sql, args

    @property
    def hidden_names(self) -> list[str]:
        return [f"\x00cursor{i}" for i in range(len(self.key) + (1 if self.cursor else 0))]

    def position_after(self, hidden_values: Sequence[str], previous: dict[str, Any] | None) -> dict[str, Any]:
        """The position after a row whose cursor and key texts are `hidden_values`."""
        if self.cursor is not None:
            return {"cursor": hidden_values[0], "key": list(hidden_values[1:])}
        return {"pass": (previous or {}).get("pass", 1), "key": list(hidden_values), "done": False}


def next_pass(position: dict[str, Any] | None) -> dict[str, Any]:
    """Where a whole-table read starts: a new pass after a finished one, else where it stands."""
    if position is None:
        return {"pass": 1, "key": None, "done": False}
    if position.get("done"):
        return {"pass": int(position.get("pass", 0)) + 1, "key": None, "done": False}
    return position
