"""Finding the rows of a batch Snowflake would refuse, before anything is written: Snowflake has
no savepoints, so a refused row cannot be taken out of a transaction after the fact (the batch
would fail whole). What is checked is what the server refuses exactly the same way, from
`information_schema.columns`:

- a NULL in a NOT NULL column, and a NOT NULL column without a default that the batch does not
  carry (every row would be NULL there);
- text longer than its column's `VARCHAR(n)` (Snowflake counts characters) and bytes longer
  than its `BINARY(n)`.

Anything else Snowflake refuses still fails the batch (and is retried, then reported)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduitd.destinations.snowflake.dialect import quote
from conduitd.destinations.snowflake.driver import SnowflakeDriver

_UNBOUNDED = 16_777_216
"""The largest VARCHAR and the length Snowflake reports for VARCHAR without a length."""


@dataclass(frozen=True)
class Limits:
    """What a live column refuses."""

    name: str
    nullable: bool
    has_default: bool
    max_length: int | None
    """Characters for text, bytes for binary; None when unlimited."""


async def column_limits(driver: SnowflakeDriver, table: str) -> list[Limits]:
    rows = await driver.fetch(
        f"SELECT column_name, is_nullable, column_default, character_maximum_length, data_type FROM "
        f"{quote(driver.database)}.information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", (driver.schema, table))
    found = []
    for name, nullable, default, length, _kind in rows:
        limit = int(length) if length is not None and 0 < int(length) < _UNBOUNDED else None
        found.append(Limits(str(name), str(nullable).upper() != "NO", default is not None, limit))
    return found


def refused_rows(rows: pa.Table, limits: Sequence[Limits]) -> list[tuple[int, str]]:
    """(row, reason) of the rows the limits refuse, in row order; the first reason of a row."""
    n = rows.num_rows
    reasons: dict[int, str] = {}
    for limit in limits:
        if limit.name not in rows.column_names:
            if not limit.nullable and not limit.has_default and n:
                for row in range(n):
                    reasons.setdefault(row, f'NULL result in a non-nullable column "{limit.name}" (the batch has '
                                            "no such field and the column has no default)")
            continue
        values = rows.column(limit.name)
        if not limit.nullable and values.null_count:
            for found in np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False)):
                reasons.setdefault(int(found), f'NULL result in a non-nullable column "{limit.name}"')
        if limit.max_length is None:
            continue
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            lengths, unit = pc.utf8_length(values), "characters"
        elif pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            lengths, unit = pc.binary_length(values), "bytes"
        else:
            continue
        too_long = pc.fill_null(pc.greater(lengths, limit.max_length), False)
        for found in np.flatnonzero(too_long.to_numpy(zero_copy_only=False)):
            reasons.setdefault(int(found), f'value of {lengths[int(found)].as_py()} {unit} is too long for column '
                                         f'"{limit.name}" (at most {limit.max_length}): Snowflake would refuse it')
    return sorted(reasons.items())
