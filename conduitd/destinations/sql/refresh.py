"""`mode: full_refresh` on SQL destinations: a run loads a staging table and swaps it in at the end.

- `begin` (before the source reads anything): the pipeline's checkpoints are reset and the
  staging table (`<table>__conduitd_refresh`) is dropped and created again like the target (same
  columns, types, defaults, keys), so the run's batches are prepared against the target's types.
  Every run starts the load afresh: a run interrupted by a crash or a stop leaves the target as
  it was, and the next run reads the whole source again (a resumed load would splice two reads of
  the source; a whole-table read would even start a second pass).
- the batches: committed into the staging table as usual, each with its positions (the
  positions of a full refresh run are those of its staging load) and its DLQ rows.
- `finish` (after the source is read to its end): in ONE transaction, the target gets the
  staging table's new columns, its rows are deleted, the staging rows inserted, the staging
  table dropped and the checkpoints reset (the next run reads everything again). DELETE, not
  TRUNCATE: PostgreSQL's TRUNCATE is not MVCC-safe (a reader whose snapshot is older, such as
  pg_dump's, sees the table empty), and a DELETE leaves the table itself (grants, views,
  foreign keys, triggers) as it was, where a RENAME swap would not. Readers never wait and see
  the old rows until COMMIT, the new ones after it. MySQL/InnoDB: the DDL (new columns) runs
  first, on its own; the DROP's implicit commit commits the DELETE, INSERT and reset together.
  SQLite: one transaction (WAL readers keep their snapshot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Protocol

from conduitd.config import PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.schema import Column
from conduitd.destinations.sql.bookkeeping import Bookkeeping
from conduitd.destinations.sql.driver import SqlDriver

SUFFIX = "__conduitd_refresh"


def staging_name(table: str, max_bytes: int | None) -> str:
    """The staging table of `table`: `<table>__conduitd_refresh`, or a name made from a digest
    of `table` where that would pass the destination's identifier limit (it would be cut short)."""
    name = f"{table}{SUFFIX}"
    if max_bytes is None or len(name.encode()) <= max_bytes:
        return name
    return f"conduitd_refresh_{hashlib.sha256(table.encode()).hexdigest()[:24]}"


class RefreshTransaction(Protocol):
    """The steps of a SQL destination's transaction a refresh uses."""

    books: Bookkeeping
    driver: SqlDriver

    async def table_columns(self, table: str) -> dict[str, Column] | None: ...

    async def run_ddl(self, statement: str) -> None: ...


class RefreshSql(Protocol):
    """What a SQL destination adds for a full refresh: its statements that differ per store."""

    @property
    def dialect(self) -> Dialect: ...

    async def create_like(self, tx: RefreshTransaction, staging: str, target: str) -> None:
        """Create `staging` with `target`'s columns, types, defaults and keys (not its data)."""

    def rename_sql(self, tx: RefreshTransaction, old: str, new: str) -> str:
        """The statement renaming table `old` to `new` (in the same schema or database)."""


async def begin(store: RefreshSql, tx: RefreshTransaction, pipeline: PipelineConfig, staging: str) -> None:
    """Start the run's load afresh (see the module docstring). In this order, so that on MySQL,
    where each DDL commits by itself, any crash point leads to the same start next time."""
    target, driver = pipeline.table_name, tx.driver
    await tx.books.reset_checkpoints(pipeline.name)
    await tx.run_ddl(f"DROP TABLE IF EXISTS {driver.table(staging)}")
    if await tx.table_columns(target) is not None:
        await store.create_like(tx, staging, target)


async def finish(store: RefreshSql, tx: RefreshTransaction, pipeline: PipelineConfig, staging: str) -> int:
    """Swap the staging rows in (see the module docstring); return how many rows the table holds."""
    target, driver = pipeline.table_name, tx.driver
    live, staged = await tx.table_columns(target), await tx.table_columns(staging)
    if staged is None:  # the run read no rows and there was no table to copy: nothing to load
        if live is not None:
            await driver.execute(f"DELETE FROM {driver.table(target)}")
        await tx.books.reset_checkpoints(pipeline.name)
        return 0
    if live is None:
        await tx.books.reset_checkpoints(pipeline.name)
        await tx.run_ddl(store.rename_sql(tx, staging, target))
        return await _count(tx, target)
    for statement in align(store.dialect, target, live, staged):
        await tx.run_ddl(statement)
    names = {store.dialect.name_key(n): n for n in live}
    q = driver.types.quote
    quoted: Callable[[str], str] = lambda n: q + n.replace(q, q + q) + q  # noqa: E731
    into = ", ".join(quoted(names.get(store.dialect.name_key(n), n)) for n in staged)
    await driver.execute(f"DELETE FROM {driver.table(target)}")
    await driver.execute(f"INSERT INTO {driver.table(target)} ({into}) "
                         f"SELECT {', '.join(quoted(n) for n in staged)} FROM {driver.table(staging)}")
    await tx.books.reset_checkpoints(pipeline.name)
    await tx.run_ddl(f"DROP TABLE {driver.table(staging)}")
    return await _count(tx, target)


def align(dialect: Dialect, target: str, live: Mapping[str, Column], staged: Mapping[str, Column]) -> list[str]:
    """DDL giving the target the columns the staging table gained during the run (schema
    evolution ran on the staging table) and the wider types it took."""
    known = {dialect.name_key(n): c for n, c in live.items()}
    statements = []
    for name, column in staged.items():
        old = known.get(dialect.name_key(name))
        if old is None:
            statements.append(dialect.add_column_ddl(target, column))
        elif old.sql != column.sql:
            widen = dialect.widen_column_ddl(target, Column(old.name, column.arrow, column.sql, column.json,
                                                            column.native))
            if widen is not None:
                statements.append(widen)
    return statements


async def _count(tx: RefreshTransaction, table: str) -> int:
    rows = await tx.driver.fetch(f"SELECT count(*) FROM {tx.driver.table(table)}")
    return int(rows[0][0])
