"""Which row of a COPY the server refused, from the error's structured context field.

PostgreSQL names the row a COPY stopped at in the error's context (`where`) field, as
`COPY <relation>, line <n>[, column <name>[: "<value>"]]`; the relation is the one we COPY
into. In binary COPY n counts rows from 1. In CSV it does not (measured: rows after values with
line breaks inside quotes were reported at later lines), so a CSV line names no row. Inner
contexts (a trigger's function) come before it and a value shown after it may hold anything, so
only a line that starts with the exact prefix counts, the first such line wins, and the column
is one of the columns being written. Absent or unreadable: the row is not named and the commit
searches for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg

from conduitd.destinations.base import RowsRefused
from conduitd.destinations.postgres.errors import translate

_NUMBER = re.compile(r"\d+")


def copy_line(context: str | None, relation: str, columns: Sequence[str]) -> tuple[int | None, str | None]:
    """(line, column) the COPY into `relation` stopped at, as the context field names them."""
    prefix = f"COPY {relation}, line "
    for text in (context or "").split("\n"):
        if not text.startswith(prefix):
            continue
        number = _NUMBER.match(text, len(prefix))
        if number is None:
            continue
        rest = text[number.end():]
        column = None
        if rest.startswith(", column "):
            rest = rest[len(", column "):]
            named = [c for c in columns if rest == c or rest.startswith(c + ": ")]
            column = max(named, key=len, default=None)
        return int(number.group()), column
    return None, None


def refusal(exc: asyncpg.PostgresError, relation: str, columns: Sequence[str], *, by_line: bool) -> BaseException:
    """What to raise for an error of a COPY into `relation`: RowsRefused naming the row (index
    from 0) and, in the reason, the column when the server says which; else `translate(exc)`.
    `by_line`: the line is the row (binary COPY); in CSV, line breaks inside values are counted
    too, so a CSV line names no row."""
    translated = translate(exc)
    if not isinstance(translated, RowsRefused):
        return translated
    line, column = copy_line(getattr(exc, "context", None), relation, columns)
    line = line if by_line else None
    column = column or getattr(exc, "column_name", None)
    reason = translated.reason + (f" (column {column!r})" if column and repr(column) not in translated.reason
                                  and f'"{column}"' not in translated.reason else "")
    return RowsRefused(reason, None if line is None or line < 1 else line - 1)
