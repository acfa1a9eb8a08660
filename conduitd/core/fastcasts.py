"""Casts to a destination's column types that need no text on the way, for the columns where they
give exactly what `schema.conform` gives (pure; used by `prepare` before `conform`, which then finds
those columns already of their type and leaves them be).

Doubles into a decimal column: `schema` writes each double's shortest text and reads that as a
decimal (3703.6 stays 3703.6, never 3703.59999...), rounding only where the text has more
fraction digits than the column. Here the same value comes from arithmetic: for a double `x` and a
scale `s`, `d = rint(x * 10**s)` is the decimal's unscaled value when `d / 10**s` (one correctly
rounded division) is `x` again. That proves a number with at most `s` fraction digits reads as
`x`; when a double's spacing is under `10**-s` (precision <= 15 and `|x| < 10**(precision - s)`)
it is the only one, so it is the shortest text's value. A column with any other value (more
digits, too large, NaN) is left to `conform` whole.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from conduitd.core.schema import Column

_MAX_PRECISION = 15
"""Digits up to which a double's spacing stays under the scale's unit (2**-52 * 10**15 < 1)."""


def precast(rows: pa.Table, columns: Mapping[str, Column]) -> pa.Table:
    """`rows` with every column a fast cast applies to already of its destination type."""
    for index, name in enumerate(rows.column_names):
        target = columns.get(name)
        if target is None:
            continue
        column = rows.column(index)
        if pa.types.is_float64(column.type) and pa.types.is_decimal128(target.arrow):
            cast = doubles_to_decimal(column.combine_chunks(), target.arrow)
            if cast is not None:
                rows = rows.set_column(index, name, cast)
    return rows


def doubles_to_decimal(array: pa.Array, wanted: pa.Decimal128Type) -> pa.Array | None:
    """The doubles as `wanted` decimals, exactly as their shortest text reads; None where a value
    needs that text (see the module docstring)."""
    precision, scale = wanted.precision, wanted.scale
    if precision > _MAX_PRECISION or scale < 0 or array.offset:
        return None
    values = np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array))
    valid = None if array.null_count == 0 else np.asarray(array.is_valid().to_numpy(zero_copy_only=False))
    if valid is not None:
        values = np.where(valid, values, 0.0)
    unit = float(10**scale)
    with np.errstate(invalid="ignore", over="ignore"):
        unscaled = np.rint(values * unit)
        exact = (np.abs(values) < float(10 ** (precision - scale))) & (unscaled / unit == values)
    if not exact.all():
        return None
    low = unscaled.astype(np.int64)
    words = np.empty((len(low), 2), dtype=np.int64)
    words[:, 0] = low
    words[:, 1] = low >> 63  # the high word: the sign, extended
    validity = array.buffers()[0] if valid is not None else None
    return pa.Array.from_buffers(wanted, len(array), [validity, pa.py_buffer(words)])
