"""Which of a list of keys a PostgreSQL source still has: the source's side of a key scan. Keys
travel as text arrays cast on the server to the key columns' own types, so `1.50` finds the
numeric 1.5 and a timestamp's ISO text finds its row; the answer is the indexes of the keys found."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from conduitd.sources.tables.catalog import quote
from conduitd.sources.tables.cursor import Plan


async def present_keys(conn: asyncpg.Connection, plan: Plan, names: Sequence[str],
                       keys: Sequence[Sequence[str]]) -> set[int]:
    """Indexes into `keys` (texts of the columns `names`, in that order) of the rows the source has."""
    if not keys:
        return set()
    by_name = {c.name: c for c in plan.columns}
    columns = [by_name[n] for n in names]
    arrays = ", ".join(f"${n + 1}::text[]" for n in range(len(columns)))
    names = ", ".join(f"k{n}" for n in range(len(columns)))
    match = " AND ".join(f"conduitd_src.{quote(c.name)} = probe.k{n}::{c.sql_type}" for n, c in enumerate(columns))
    sql = (f"SELECT probe.n FROM unnest({arrays}) WITH ORDINALITY AS probe({names}, n) "
           f"WHERE EXISTS (SELECT 1 FROM {plan.source} AS conduitd_src WHERE {match})")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(sql, *[[k[n] for k in keys] for n in range(len(columns))])
    return {int(r[0]) - 1 for r in rows}
