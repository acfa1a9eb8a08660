"""An upsert's merge retried row by row inside the server, in one statement.

The merge (`INSERT ... SELECT FROM stage ON CONFLICT ...`) names no refused row when it fails.
Rather than narrowing by halves (one round trip per attempt, refused x log(n) of them), a `DO`
block loops over the staged rows in their batch order and merges each in its own
sub-transaction; a row the server refuses (the SQLSTATE classes `errors.translate` calls
refused) is recorded with its SQLSTATE, message and column, and the loop goes on. Every other
error ends the block (and is raised as it is). Server cost per row, one round trip for all.
"""

from __future__ import annotations

from collections.abc import Sequence

from conduitd.destinations.postgres import ddl

REFUSED = "conduitd_refused"

# Condition names of the SQLSTATE classes the merge refuses a row for (errors._REFUSED_CLASSES);
# class 54 is caught whole by its name, so anything but 54000 itself is raised again.
_CLASSES = "data_exception OR integrity_constraint_violation OR with_check_option_violation OR plpgsql_error"


def row_column(columns: Sequence[str]) -> str:
    """A name for the stage's row number column that no batch column has."""
    name = "conduitd_row"
    while name in columns:
        name += "_"
    return name


def _dollar_quote(body: str) -> str:
    tag = "$conduitd$"
    n = 0
    while tag in body:
        n += 1
        tag = f"$conduitd{n}$"
    return f"{tag}{body}{tag}"


def merge_rows_sql(target: str, stage: str, row: str, names: Sequence[str], key: Sequence[str],
                   action: str) -> str:
    """The statements that merge the rows of `stage` into `target` (both quoted/qualified
    already) one by one, in the order of `row` (its row number column, counted from 1), and
    record each refused one in REFUSED as (row from 0, SQLSTATE, message, column)."""
    cols = ", ".join(ddl.quote(n) for n in names)
    conflict = ", ".join(ddl.quote(k) for k in key)
    body = (
        # Column names are the user's: they win over the block's variables, which are always
        # named through the block's label.
        "#variable_conflict use_column\n<<conduitd_merge>> "
        "DECLARE t tid; n bigint; state text; message text; col text; BEGIN "
        # Each row is fetched again by its ctid (a TID scan): the stage has no index to find
        # it by its number, and a scan per row would cost n^2.
        f"FOR t, n IN SELECT ctid, {ddl.quote(row)} FROM {stage} ORDER BY 2 LOOP "
        f"BEGIN INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} "
        "WHERE ctid = conduitd_merge.t "
        f"ON CONFLICT ({conflict}) DO {action}; "
        f"EXCEPTION WHEN {_CLASSES} OR program_limit_exceeded THEN "
        "GET STACKED DIAGNOSTICS conduitd_merge.state = RETURNED_SQLSTATE, "
        "conduitd_merge.message = MESSAGE_TEXT, conduitd_merge.col = COLUMN_NAME; "
        "IF conduitd_merge.state LIKE '54%' AND conduitd_merge.state <> '54000' THEN RAISE; END IF; "
        f"INSERT INTO {REFUSED} VALUES (conduitd_merge.n - 1, conduitd_merge.state, conduitd_merge.message, "
        "NULLIF(conduitd_merge.col, '')); "
        "END; END LOOP; END")
    return (f"CREATE TEMP TABLE IF NOT EXISTS {REFUSED} (row_index bigint, sqlstate text, message text, "
            f"column_name text) ON COMMIT DROP; TRUNCATE {REFUSED}; DO {_dollar_quote(body)}")


def refused_query() -> str:
    return f"SELECT row_index, sqlstate, message, column_name FROM {REFUSED} ORDER BY row_index"


def reason(state: str, message: str, column: str | None) -> str:
    """The DLQ reason, worded as `errors.translate` and `refusal.refusal` word a refused COPY."""
    text = f"PostgreSQL {state}: {message}"
    if column and repr(column) not in text and f'"{column}"' not in text:
        text += f" (column {column!r})"
    return text
