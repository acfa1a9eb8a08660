"""What a role lacks to run a pipeline, found without writing: `validate` reports it, so that it
does not pass where `run` then fails with "permission denied"."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

_QUERY = """
SELECT current_user AS role, current_database() AS db,
       n.oid IS NOT NULL AS schema_exists,
       has_database_privilege(current_database(), 'CREATE') AS db_create,
       n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
       n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE') AS schema_create,
       ARRAY(SELECT t FROM unnest($2::text[]) AS t
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                               WHERE c.relnamespace = n.oid AND c.relname = t)) AS missing,
       ARRAY(SELECT c.relname FROM pg_catalog.pg_class c
             WHERE c.relnamespace = n.oid AND c.relname = ANY($2::text[])
               AND NOT has_table_privilege(c.oid, 'INSERT')) AS no_insert
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1
"""


async def write_problems(conn: asyncpg.Connection, schema: str, tables: Sequence[str]) -> list[str]:
    """Why the connected role could not create or write `tables` in `schema` (none: [])."""
    row = await conn.fetchrow(_QUERY, schema, list(tables))
    role, db = row["role"], row["db"]
    if not row["schema_exists"]:
        if row["db_create"]:
            return []
        return [f"role {role!r} cannot create schema {schema!r}: it has no CREATE privilege on database {db!r}"]
    if not row["schema_usage"]:
        return [f"role {role!r} has no USAGE privilege on schema {schema!r}"]
    problems = []
    if row["missing"] and not row["schema_create"]:
        missing = ", ".join(row["missing"])
        problems.append(f"role {role!r} cannot create tables in schema {schema!r} (no CREATE privilege there), "
                        f"and these are missing: {missing}")
    if row["no_insert"]:
        problems.append(f"role {role!r} has no INSERT privilege on {', '.join(row['no_insert'])} in schema {schema!r}")
    return problems
