"""The compiled interleave of binary COPY parts: the same bytes as the pure-Python assembly for
parts of every shape (broadcast pieces, per-row cuts, variable runs, zero rows), and a clear
error, never a read outside a buffer, for parts that do not fit their rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.destinations.postgres import _interleave
from conduitd.destinations.postgres.copy_binary import _assemble, _assemble_py
from conduitd.destinations.postgres.copy_binary_types import FixedPart, Part, VarPart


def _parts(draw: st.DrawFn, n: int) -> list[Part]:
    parts: list[Part] = []
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            widths = draw(st.lists(st.integers(0, 20), min_size=1, max_size=3))
            pieces = tuple(rng.integers(0, 256, (1 if draw(st.booleans()) else n, w), dtype=np.uint8) for w in widths)
            width = sum(widths)
            lengths = rng.integers(0, width + 1, n).astype(np.int64) if draw(st.booleans()) else None
            parts.append(FixedPart(pieces, lengths))
        else:
            data = rng.integers(0, 256, draw(st.integers(0, 300)), dtype=np.uint8)
            starts = rng.integers(0, len(data) + 1, n).astype(np.int64)
            lengths = np.array([rng.integers(0, len(data) - s + 1) for s in starts], dtype=np.int64)
            parts.append(VarPart(data, starts, lengths))
    return parts


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, list[Part]]:
    n = draw(st.integers(0, 40))
    return n, _parts(draw, n)


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_the_same_bytes_as_the_python_assembly(layout: tuple[int, list[Part]]) -> None:
    n, parts = layout
    compiled = _assemble(parts, n)
    assert compiled.dtype == np.uint8
    assert compiled.tobytes() == _assemble_py(parts, n).tobytes()


def test_the_usual_fixed_widths_and_a_cut_inside_a_piece() -> None:
    n = 3
    rows = np.arange(n * 16, dtype=np.uint8).reshape(n, 16)
    for width in (1, 2, 4, 8, 12, 16, 3):
        part = FixedPart((np.array([[9, 9]], dtype=np.uint8), rows[:, :width].copy()),
                         np.array([1, 2 + width, 2 + width // 2], dtype=np.int64))
        assert _assemble([part], n).tobytes() == _assemble_py([part], n).tobytes()


I64 = np.int64


@pytest.mark.parametrize(("parts", "message"), [
    ([(1, b"abc", np.array([2], I64), np.array([2], I64))], "outside its buffer"),
    ([(1, b"abc", np.array([-1], I64), np.array([1], I64))], "outside its buffer"),
    ([(1, b"abc", np.array([0], I64), np.array([-1], I64))], "outside its buffer"),
    ([(1, b"abc", np.array([0, 0], I64)[:1], np.array([], I64))], "lengths"),
    ([(0, ((b"abcd", 4, 4),), None)], "shorter than its rows"),
    ([(0, ((b"abcd", 2, 2),), np.array([3, 1], I64))], "outside its buffer"),
    ([(0, ((b"abcd", 2, 2),), np.array([-1, 1], I64))], "outside its buffer"),
    ([(2, b"", b"", b"")], "a part is"),
])
def test_parts_that_do_not_fit_are_refused(parts: list[tuple[object, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _interleave.interleave(2 if parts[0][0] == 0 else 1, parts)


def test_a_non_contiguous_piece_is_refused() -> None:
    matrix = np.arange(16, dtype=np.uint8).reshape(4, 4)[:, ::-1]
    with pytest.raises((ValueError, BufferError, TypeError)):
        _interleave.interleave(4, [(0, ((matrix, 4, 4),), None)])


def test_thousands_of_parts_as_a_wide_table_makes() -> None:
    """Tables of 1,700 and 5,000 columns: thousands of buffers held at once (a 1,610-column record
    crashed the first build, which moved the buffers it held while it still pointed at them)."""
    rng = np.random.default_rng(5)
    n = 3
    for columns, fixed in ((1700, True), (5000, False)):
        parts: list[Part] = []
        for _ in range(columns):
            data = rng.integers(0, 256, 30, dtype=np.uint8)
            if fixed:
                parts.append(FixedPart((rng.integers(0, 256, (n, 4), dtype=np.uint8),),
                                       np.array([4, 0, 2], dtype=np.int64)))
            parts.append(VarPart(data, np.array([0, 5, 10], dtype=np.int64), np.array([3, 0, 20], dtype=np.int64)))
        assert _assemble(parts, n).tobytes() == _assemble_py(parts, n).tobytes()
