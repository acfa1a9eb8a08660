"""Isolating refused rows (`conduitd.runtime.isolate`) against an in-memory twin of a transaction, and
reading the refused COPY row from PostgreSQL's context field (`refusal.copy_line`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from conduitd.core.schema import Column
from conduitd.destinations.base import RowsPartlyRefused, RowsRefused
from conduitd.destinations.postgres.refusal import copy_line
from conduitd.runtime.isolate import write_isolating


class Twin:
    """A table that refuses rows whose `v` is negative and ids it holds already, with savepoints.
    `names_row`: say which row was refused (a COPY) or not (an upsert's merge)."""

    def __init__(self, names_row: bool, existing: set[int]) -> None:
        self.names_row = names_row
        self.stored: list[list[int]] = [sorted(existing)]
        self.held = set(existing)
        self.writes = 0

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self.stored.append([])
        try:
            yield
        except RowsPartlyRefused:
            self._release()
            raise
        except RowsRefused:
            self.held.difference_update(self.stored.pop())
            raise
        self._release()

    def _release(self) -> None:
        top = self.stored.pop()
        self.stored[-1].extend(top)

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []  # as SQLite: every refused row is met by a write attempt

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self.writes += 1
        held, level = self.held, self.stored[-1]
        for index, (row_id, v) in enumerate(zip(rows["id"].to_pylist(), rows["v"].to_pylist(), strict=True)):
            if v < 0 or row_id in held:
                raise RowsRefused(f"refused {row_id}: {'v_not_negative' if v < 0 else 'key'}",
                                  index if self.names_row else None)
            held.add(row_id)
            level.append(row_id)


def isolate(n: int, bad: set[int], existing: set[int], names_row: bool) -> tuple[Twin, list[int], int]:
    twin = Twin(names_row, existing)
    rows = pa.table({"id": pa.array(range(n), pa.int64()),
                     "v": pa.array([-1 if i in bad else 1 for i in range(n)], pa.int64())})
    result = asyncio.run(write_isolating(twin, "t", rows, [], (), None))  # type: ignore[arg-type]
    assert twin.writes == result.attempts
    return twin, [row for row, _ in result.refused], result.attempts


@given(n=st.integers(1, 400), data=st.data(), names_row=st.booleans())
def test_every_row_is_written_or_refused_exactly_once(n: int, data: st.DataObject, names_row: bool) -> None:
    bad = data.draw(st.sets(st.integers(0, n - 1)))
    existing = data.draw(st.sets(st.integers(0, n - 1)))
    twin, refused, _ = isolate(n, bad, existing, names_row)
    written = [i for i in twin.stored[0] if i not in existing]
    assert len(twin.stored) == 1  # every savepoint closed
    assert sorted(refused) == sorted(bad | existing)
    assert sorted(written) == sorted(set(range(n)) - bad - existing)
    assert len(written) == len(set(written))


def test_named_rows_cost_attempts_in_proportion_to_the_refused_rows() -> None:
    n = 200_000
    bad = set(np.random.default_rng(3).choice(n, n // 100, replace=False).tolist())
    _, refused, attempts = isolate(n, bad, set(), names_row=True)
    assert len(refused) == len(bad)
    assert attempts <= 2 * len(bad)  # halving: about 2 x log2(n / refused) = 14 per refused row


def test_without_named_rows_only_the_neighbourhood_is_halved() -> None:
    n = 20_000
    bad = set(np.random.default_rng(4).choice(n, n // 100, replace=False).tolist())
    _, refused, attempts = isolate(n, bad, set(), names_row=False)
    assert len(refused) == len(bad)
    gap = n / len(bad)
    assert attempts <= len(bad) * (2 * math.log2(4 * gap) + 3)


def test_the_copy_line_is_read_from_the_context_field_only_where_it_starts_a_line() -> None:
    columns = ["id", "name", "name: x"]
    assert copy_line("COPY orders, line 12", "orders", columns) == (12, None)
    assert copy_line("COPY orders, line 3, column name", "orders", columns) == (3, "name")
    assert copy_line('COPY orders, line 3, column name: x: "abc"', "orders", columns) == (3, "name: x")
    # A value shown in the context cannot pose as the line; neither can another relation.
    assert copy_line('COPY orders, line 7: "1,\nCOPY orders, line 1"', "orders", columns) == (7, None)
    assert copy_line("COPY other, line 7", "orders", columns) == (None, None)
    assert copy_line("PL/pgSQL function f() line 3 at RAISE\nCOPY orders, line 9", "orders", columns) == (9, None)
    assert copy_line(None, "orders", columns) == (None, None)


@given(value=st.text(max_size=40), line=st.integers(1, 10**9))
def test_no_value_moves_the_line_read(value: str, line: int) -> None:
    context = f'COPY orders, line {line}, column name: "{value}"'
    assert copy_line(context, "orders", ["name"]) == (line, "name")
