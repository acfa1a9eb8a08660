"""Finding, in one query, the rows of a batch that PostgreSQL would refuse for what its catalog
says: NOT NULL columns, CHECK constraints, and unique keys already in the table or repeated in
the batch. Run once a write has been refused, so that the refused rows are dead-lettered together
rather than met one write attempt at a time; a clean batch never pays for it.

Only what the server would do exactly the same way is checked: values too long for their
`varchar(n)`/`char(n)` column (in Arrow, before anything is sent), CHECK constraints whose
columns are all in the batch (`(expr) IS FALSE`, as the server treats NULL as passing), unique
indexes that are immediate, total (no predicate), on plain columns, all in the batch, and
immediate, validated MATCH SIMPLE foreign keys to another table (an upsert that leaves a key
as it was is not checked by the server: a NOT VALID key may hold rows that break it). Tables
with BEFORE ROW triggers or rules (which may change a row before it is checked) are not
screened by the server. What is left
(exclusion constraints, expression indexes, deferred or self-referencing keys, other type
errors) is found by the write attempts as before, and so is anything a screen misses; a screen
that fails itself (an expression that errs) is rolled back and counts for nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.core.schema import Column
from conduitd.destinations.postgres import ddl

SCREEN = "conduitd_screen"
ROW = "conduitd_screen_row"
REASON = "conduitd_screen_reason"

_COLUMNS = """SELECT a.attname, a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS filled
              FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped"""
_CHECKS = """SELECT conname, pg_get_expr(conbin, conrelid) AS expr,
                    ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = ANY(conkey)) AS cols
             FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'"""
_UNIQUE = """SELECT c.relname AS name, i.indnullsnotdistinct AS nulls_equal,
                    ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, o)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          WHERE k.o <= i.indnkeyatts ORDER BY k.o) AS cols,
                    i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL AS usable
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid"""
_FOREIGN = """SELECT conname, confrelid::regclass::text AS parent,
                     ARRAY(SELECT a.attname FROM unnest(conkey) WITH ORDINALITY k(n, o)
                           JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
                     ARRAY(SELECT a.attname FROM unnest(confkey) WITH ORDINALITY k(n, o)
                           JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k.n ORDER BY k.o) AS refs,
                     NOT condeferred AND confmatchtype = 's' AND confrelid <> conrelid AND convalidated AS usable
              FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'"""
_EXCLUSIONS = "SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'x'"
_SCREENABLE = """SELECT c.relkind = 'r' AND NOT c.relhasrules AND NOT EXISTS (
                    SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
                      AND t.tgenabled <> 'D' AND (t.tgtype & 3) = 3)
                 FROM pg_class c WHERE c.oid = $1::regclass"""


_LENGTH = re.compile(r"(?:character varying|character|bpchar|varchar)\((\d+)\)")


def too_long(rows: pa.Table, columns: Sequence[Column], table: str) -> list[tuple[int, str]]:
    """Rows with a value longer than its `varchar(n)`/`char(n)` column allows: the server refuses
    them unless what is over the length is only spaces (which it cuts)."""
    found: dict[int, str] = {}
    for column in columns:
        declared = _LENGTH.fullmatch(column.sql)
        if declared is None or column.name not in rows.column_names:
            continue
        limit = int(declared.group(1))
        values = rows.column(column.name)
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            continue
        over = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_rtrim(values, characters=" ")), limit), False)
        for row in np.flatnonzero(over.to_numpy()):
            found.setdefault(int(row), f"PostgreSQL 22001: value too long for type {column.sql} "
                                       f"(column {column.name!r}) (found before writing)")
    return sorted(found.items())


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def screen_query(conn: asyncpg.Connection, target: str, table: str, names: Sequence[str],
                       key: Sequence[str]) -> str | None:
    """The query that lists (row, reason) of the refused rows of the screen table (`SCREEN`, the
    batch's columns and `ROW`, its row index), or None when there is nothing to check or the
    table cannot be screened."""
    if ROW in names or REASON in names or not await conn.fetchval(_SCREENABLE, target):
        return None
    present = set(names)
    cases: list[str] = []
    for column in await conn.fetch(_COLUMNS, target):
        name = column["attname"]
        if not column["attnotnull"]:
            continue
        reason = _text(f'PostgreSQL 23502: null value in column "{name}" of relation "{table}" violates '
                       "not-null constraint (found before writing)")
        if name in present:
            cases.append(f"WHEN s.{ddl.quote(name)} IS NULL THEN {reason}")
        elif not column["filled"] and not key:
            cases.append(f"WHEN true THEN {reason}")  # never given a value: every row is refused
    # Whether every constraint is screened: only then is a repeat of an earlier row's key known to
    # be refused (that earlier row could otherwise be refused by what no screen sees, and the
    # repeat then written).
    complete = not await conn.fetchval(_EXCLUSIONS, target)
    for check in await conn.fetch(_CHECKS, target):
        complete &= bool(check["cols"]) and set(check["cols"]) <= present
        if check["cols"] and set(check["cols"]) <= present:
            reason = _text(f'PostgreSQL 23514: new row for relation "{table}" violates check constraint '
                           f'"{check["conname"]}" (found before writing)')
            cases.append(f"WHEN ({check['expr']}) IS FALSE THEN {reason}")
    for foreign in await conn.fetch(_FOREIGN, target):
        cols, refs = list(foreign["cols"]), list(foreign["refs"])
        complete &= foreign["usable"] and set(cols) <= present
        if foreign["usable"] and cols and set(cols) <= present:
            # MATCH SIMPLE: a row with a null in the key references nothing and passes.
            given = " AND ".join(f"s.{ddl.quote(c)} IS NOT NULL" for c in cols)
            match = " AND ".join(f"p.{ddl.quote(r)} = s.{ddl.quote(c)}" for c, r in zip(cols, refs, strict=True))
            reason = _text(f'PostgreSQL 23503: insert or update on table "{table}" violates foreign key constraint '
                           f'"{foreign["conname"]}" (found before writing)')
            cases.append(f"WHEN {given} AND NOT EXISTS (SELECT 1 FROM {foreign['parent']} p WHERE {match}) "
                         f"THEN {reason}")
    duplicates: list[str] = []
    unique = [] if key else await conn.fetch(_UNIQUE, target)  # an upsert's existing keys are updates
    for index in unique:
        cols = list(index["cols"])
        complete &= index["usable"] and bool(cols) and set(cols) <= present
        if index["usable"] and cols and set(cols) <= present:
            equal = "IS NOT DISTINCT FROM" if index["nulls_equal"] else "="
            match = " AND ".join(f"t.{ddl.quote(c)} {equal} s.{ddl.quote(c)}" for c in cols)
            reason = _text(f'PostgreSQL 23505: duplicate key value violates unique constraint "{index["name"]}" '
                           "(found before writing)")
            cases.append(f"WHEN EXISTS (SELECT 1 FROM {target} t WHERE {match}) THEN {reason}")
            partition = ", ".join(f"s.{ddl.quote(c)}" for c in cols)
            where = "" if index["nulls_equal"] else " AND ".join(f"s.{ddl.quote(c)} IS NOT NULL" for c in cols)
            duplicates.append(
                f"CASE WHEN {where or 'true'} AND row_number() OVER (PARTITION BY {partition} "
                f"ORDER BY s.{ROW}) > 1 THEN {reason} END")
    if len(duplicates) > 1 or not complete:
        # Which repeat the server refuses then depends on which rows the other keys (or what no
        # screen sees) refused first, row by row: left to the write attempts.
        duplicates = []
    if not cases and not duplicates:
        return None
    first = f"CASE {' '.join(cases)} END" if cases else "NULL::text"
    # Rows repeating a key of an earlier row of the batch are refused only if that earlier row is
    # written: the repeats are counted among the rows that pass the other checks.
    later = f"COALESCE({', '.join(duplicates)})" if duplicates else "NULL::text"
    return (f"WITH judged AS (SELECT s.*, {first} AS {REASON} FROM {SCREEN} s), "
            f"kept AS (SELECT s.{ROW}, {later} AS {REASON} FROM judged s WHERE s.{REASON} IS NULL) "
            f"SELECT {ROW}, {REASON} FROM judged WHERE {REASON} IS NOT NULL "
            f"UNION ALL SELECT {ROW}, {REASON} FROM kept WHERE {REASON} IS NOT NULL "
            f"ORDER BY 1")
