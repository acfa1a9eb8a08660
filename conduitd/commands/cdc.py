"""`conduitd cdc setup`: prepare PostgreSQL source tables for change capture. For a polling source
the exact mode (an `xid8` column stamped by the writing transaction; see
`conduitd.sources.tables.xid_setup`); for `mode: log` a publication of the table and a logical
replication slot with the `pgoutput` plugin (`conduitd.sources.pglog.slot`; the server needs
`wal_level=logical`, the account the REPLICATION attribute and ownership of the table).
Prints the DDL for each selected pipeline; `--apply` runs it (the source's account then needs
ALTER and CREATE rights on the table, which reading does not)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conduitd.config import Config, PipelineConfig
from conduitd.errors import ConduitError, ConfigError
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig


async def cdc_setup(config: Config, only: Sequence[str], *, apply: bool) -> int:
    from conduitd.sources.tables.catalog import PRIMARY_KEY_SQL, quote, relation
    from conduitd.sources.tables.postgres import connect
    from conduitd.sources.tables.xid_setup import COLUMN, setup_statements

    chosen = [p for p in config.resources if not only or p.name in only]
    targets: list[tuple[PipelineConfig, PostgresSourceConfig]] = []
    for pipeline in chosen:
        source = config.source(pipeline.source)
        if isinstance(source, PostgresSourceConfig) and pipeline.source_table is not None:
            targets.append((pipeline, source))
        elif only:
            raise ConfigError(f"pipeline {pipeline.name!r}: cdc setup prepares PostgreSQL source tables "
                              "(`type: postgres` with `source_table`)")
    if not targets:
        raise ConfigError("no pipeline reads a PostgreSQL source_table: nothing to set up")
    for pipeline, source in targets:
        schema, table = relation(pipeline.source_table or "", source.db_schema)
        if source.mode == "log":
            await _log_setup(pipeline, source, schema, table, apply=apply)
            continue
        conn = await connect(source)
        try:
            key = [r[0] for r in await conn.fetch(PRIMARY_KEY_SQL, f"{quote(schema)}.{quote(table)}")]
            key = key or list(pipeline.unique_key)
            if not key:
                raise ConfigError(f"pipeline {pipeline.name!r}: {schema}.{table} has no primary key: set unique_key")
            statements = setup_statements(schema, table, key)
            print(f"-- pipeline {pipeline.name}: {schema}.{table}; then read it with "
                  f"incremental: {{column: {COLUMN}, strategy: xid}}")
            for statement in statements:
                print(statement + ";")
            if apply:
                await conn.execute("SET default_transaction_read_only = off")
                async with conn.transaction():
                    for statement in statements:
                        await _execute(conn, pipeline, statement, "nothing was applied (one transaction)")
                print(f"-- applied to {schema}.{table}")
        finally:
            await conn.close()
    return 0


async def _log_setup(pipeline: PipelineConfig, source: PostgresSourceConfig, schema: str, table: str, *,
                     apply: bool) -> None:
    """The publication and the slot of a log-mode pipeline, each created only if missing. The
    slot is created last and outside any transaction (the server requires it): the snapshot the
    source reads first starts after it, so nothing falls between the two."""
    from conduitd.sources.pglog.slot import EXISTING_SQL, TRUNCATE_SQL, setup_statements, slot_name
    from conduitd.sources.tables.postgres import connect

    name = slot_name(pipeline.name)
    conn = await connect(source)
    try:
        have_publication, have_slot, wal_level = await conn.fetchrow(EXISTING_SQL, name)
        truncates = not have_publication or bool(await conn.fetchval(TRUNCATE_SQL, name))
        statements = setup_statements(schema, table, name, have_publication=have_publication, have_slot=have_slot,
                                      publishes_truncate=truncates)
        print(f"-- pipeline {pipeline.name}: {schema}.{table} read from the log through slot {name}")
        if wal_level != "logical":
            print(f"-- the server has wal_level={wal_level}: set wal_level=logical and restart it first")
        for statement in statements:
            print(statement + ";")
        if not statements:
            print("-- the publication and the slot exist already")
        if apply and statements:
            if wal_level != "logical":
                raise ConfigError(f"pipeline {pipeline.name!r}: the source server has wal_level={wal_level}; "
                                  "log mode needs wal_level=logical (and a restart)")
            await conn.execute("SET default_transaction_read_only = off")
            for done, statement in enumerate(statements):
                await _execute(conn, pipeline, statement, f"{done} statement(s) before it were applied; "
                               "running `conduitd cdc setup --apply` again applies only what is missing")
            print(f"-- applied: drop the slot when the pipeline is gone: SELECT pg_drop_replication_slot('{name}')")
    finally:
        await conn.close()


async def _execute(conn: Any, pipeline: PipelineConfig, statement: str, applied: str) -> None:
    """Run one statement of the setup; the server's refusal (no REPLICATION attribute, every
    replication slot in use, not the table's owner) becomes one clear error naming the statement."""
    import asyncpg

    try:
        await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        hint = getattr(exc, "hint", None)
        raise ConduitError(f"pipeline {pipeline.name!r}: the source server refused `{statement}`: "
                           f"{getattr(exc, 'message', None) or exc}{f' ({hint})' if hint else ''}; "
                           f"{applied}") from None
