"""`conduitd cdc setup` for PostgreSQL's exact mode: a `conduitd_xid xid8` column on the source
table set to the writing transaction's id on every insert (DEFAULT) and update (a trigger), and an
index on it and the key. Read with `incremental: {column: conduitd_xid, strategy: xid}`, a poll
reads strictly below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it has
ended, so nothing commits later below the bound: no late commit can be missed, however long a
transaction stays open or however the application sets its timestamps.

Adding a column with a volatile DEFAULT rewrites the table under an ACCESS EXCLUSIVE lock: run it
in a quiet moment on a large table."""

from __future__ import annotations

from collections.abc import Sequence

from conduitd.sources.tables.catalog import quote

COLUMN = "conduitd_xid"


def setup_statements(schema: str, table: str, key: Sequence[str]) -> list[str]:
    """The DDL that makes `schema.table` readable in exact mode (idempotent: safe to run again)."""
    relation = f"{quote(schema)}.{quote(table)}"
    function = f"{quote(schema)}.{quote('conduitd_stamp_xid')}"
    index = quote(f"{table}_conduitd_xid"[:63])
    columns = ", ".join(quote(c) for c in [COLUMN, *key])
    return [
        f"ALTER TABLE {relation} ADD COLUMN IF NOT EXISTS {quote(COLUMN)} xid8 NOT NULL DEFAULT pg_current_xact_id()",
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$BEGIN NEW.{quote(COLUMN)} := pg_current_xact_id(); RETURN NEW; END$$",
        f"CREATE OR REPLACE TRIGGER {quote('conduitd_xid')} BEFORE UPDATE ON {relation} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        f"CREATE INDEX IF NOT EXISTS {index} ON {relation} ({columns})",
    ]
