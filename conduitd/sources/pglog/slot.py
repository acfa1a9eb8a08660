"""A pipeline's replication slot and publication: their names, the DDL that creates them, and
the SQL that reads, advances and measures the slot. Imports no driver.

One slot and one publication per pipeline, both named `conduitd_<pipeline>` (lower case, other
characters as `_`, at most 63 bytes). The slot uses the `pgoutput` plugin; the publication
publishes inserts, updates, deletes and truncates of the pipeline's table: a TRUNCATE carries no
keys to delete, so the source stops at it (`errors.TruncatedAtSource`) rather than let the
destination keep rows the source no longer has without a word.

An abandoned slot keeps every WAL segment from its position on, until the source's disk fills:
drop it with `SELECT pg_drop_replication_slot('conduitd_<pipeline>')` (and the publication with
`DROP PUBLICATION conduitd_<pipeline>`) once the pipeline is gone."""

from __future__ import annotations

import re

from conduitd.sources.tables.catalog import quote

PUBLISH = "insert, update, delete, truncate"


def slot_name(pipeline: str) -> str:
    """The slot (and publication) of `pipeline`: slot names allow only [a-z0-9_]."""
    return ("conduitd_" + re.sub(r"[^a-z0-9_]", "_", pipeline.lower()))[:63]


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def setup_statements(schema: str, table: str, name: str, *, have_publication: bool,
                     have_slot: bool, publishes_truncate: bool = True) -> list[str]:
    """What `conduitd cdc setup` runs for log mode, each statement alone (a slot cannot be created
    in a transaction that has written). Idempotent through the flags; a publication made before
    conduitd asked for TRUNCATE (`publishes_truncate` False) is altered."""
    statements = []
    if have_publication and not publishes_truncate:
        statements.append(f"ALTER PUBLICATION {quote(name)} SET (publish = {literal(PUBLISH)})")
    if not have_publication:
        statements.append(f"CREATE PUBLICATION {quote(name)} FOR TABLE {quote(schema)}.{quote(table)} "
                          f"WITH (publish = {literal(PUBLISH)})")
    if not have_slot:
        statements.append(f"SELECT pg_create_logical_replication_slot({literal(name)}, 'pgoutput')")
    return statements


def setup_missing(wal_level: str, have_publication: bool, have_slot: bool, name: str) -> str:
    """What keeps log mode from reading (from `EXISTING_SQL`'s answers), or ''."""
    if wal_level != "logical":
        return f"the server has wal_level={wal_level}: set wal_level=logical and restart it"
    missing = [what for what, there in ((f"publication {name}", have_publication),
                                        (f"replication slot {name}", have_slot)) if not there]
    return f"no {' and no '.join(missing)}: run `conduitd cdc setup --apply`" if missing else ""


EXISTING_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1),
       EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1),
       current_setting('wal_level')"""

TRUNCATE_SQL = """
SELECT pubtruncate FROM pg_catalog.pg_publication WHERE pubname = $1"""
"""Whether the publication sends TRUNCATE (one made before conduitd asked for it does not)."""


def truncate_missing(name: str) -> str:
    """Why a publication that does not publish TRUNCATE cannot be read, and the fix."""
    return (f"publication {name} does not publish TRUNCATE, so a truncated table would go unnoticed: run "
            f"`conduitd cdc setup --apply`, or ALTER PUBLICATION {quote(name)} SET (publish = {literal(PUBLISH)})")


PEEK_SQL = """
SELECT data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3,
    'proto_version', '1', 'publication_names', $4)"""
"""Changes from the slot's confirmed position on, in commit order, whole transactions: up to
`$2` (an LSN, or null) and about `$3` messages (the last transaction is finished)."""

ADVANCE_SQL = """
SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn)
FROM pg_catalog.pg_replication_slots
WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn"""
"""Moves the slot on (never back: the server refuses that) after the rows up to `$2` committed."""

LAG_SQL = """
SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::float8, confirmed_flush_lsn::text
FROM pg_catalog.pg_replication_slots WHERE slot_name = $1"""
