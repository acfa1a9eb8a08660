"""The compiled byte scans and their pure-Python twins give the answers of the plain definitions,
on blocks long enough for the compiled scans' 64-byte steps, their carries across steps and their
tails; and decoding a block gives the same table and rejects with either."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core import bytescan
from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position


def test_the_compiled_scans_are_built() -> None:
    """The test environment builds the extension (`pip install -e .` with a C compiler); a
    build that quietly fell back to the twins would leave the compiled scans untested."""
    assert bytescan.COMPILED


def _opens_over(block: bytes, limit: int) -> bool:
    lines = block.replace(b"\r", b"\n").split(b"\n")
    return any(line.count(b"{") + line.count(b"[") > limit for line in lines)


def _digit_run(block: bytes, length: int) -> bool:
    return re.search(rb"[0-9.]{%d}" % length, block) is not None


PIECES = st.lists(st.sampled_from([b"{", b"[", b"]", b"}", b"\n", b"\r", b"0", b"9", b".", b"a", b"/", b":", b"{[",
                                   b"0" * 7, b"12345678", b" " * 9, b"{" * 20]), max_size=160)


@settings(max_examples=400, deadline=None)
@given(PIECES, st.integers(0, 70))
def test_opens_over(pieces: list[bytes], limit: int) -> None:
    block = b"".join(pieces)
    expected = _opens_over(block, limit)
    assert bytescan.opens_over_py(block, limit) == expected
    if bytescan.COMPILED:
        assert bytescan.opens_over(block, limit) == expected


@settings(max_examples=400, deadline=None)
@given(PIECES, st.integers(0, 7), st.integers(1, 140))
def test_digit_run(pieces: list[bytes], shift: int, length: int) -> None:
    block = b"x" * shift + b"".join(pieces)
    expected = _digit_run(block, length)
    assert bytescan.digit_run_py(block, length) == expected
    if bytescan.COMPILED:
        assert bytescan.digit_run(block, length) == expected


@settings(max_examples=200, deadline=None)
@given(PIECES)
def test_lf_offsets(pieces: list[bytes]) -> None:
    block = b"".join(pieces)
    expected = np.array([i for i, byte in enumerate(block) if byte == 10], dtype=np.int64)
    assert np.array_equal(bytescan.lf_offsets_py(block), expected)
    found = bytescan.lf_offsets(block)
    assert found.dtype == np.int64 and np.array_equal(found, expected)


@pytest.mark.parametrize("at", [0, 1, 45, 63, 64, 65, 127, 128, 200])
def test_runs_and_lines_at_every_step_boundary(at: int) -> None:
    """A run of 19 digits or 5 brackets placed across the 64-byte steps, and one byte short."""
    for length, fill in ((19, b"7"), (64, b"."), (65, b"1"), (130, b"2")):
        hit = b"a" * at + fill * length + b"a" * 70
        miss = b"a" * at + fill * (length - 1) + b"a" + fill * (length - 1) + b"a" * 70
        assert bytescan.digit_run(hit, length) and bytescan.digit_run_py(hit, length)
        assert not bytescan.digit_run(miss, length) and not bytescan.digit_run_py(miss, length)
    deep = b"x" * at + b"{a[" * 5 + b"\n" + b"y" * 70
    split = b"x" * at + b"{a[" * 2 + b"\r" + b"{[" * 2 + b"\n" + b"y" * 70
    assert bytescan.opens_over(deep, 9) and not bytescan.opens_over(deep, 10)
    assert not bytescan.opens_over(split, 4) and bytescan.opens_over(split, 3)


def test_a_zero_length_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        bytescan.digit_run(b"1", 0)
    with pytest.raises(ValueError, match="at least 1"):
        bytescan.digit_run_py(b"1", 0)


def _at(offset: int) -> Position:
    return {"offset": offset}


@pytest.mark.parametrize("block", [
    b'{"a":1.5,"b":"x"}\n{"a":0.10000000000000000000001,"b":"y"}\n{"a":2}\n',
    b'{"a":{"b":[1.000000000000000000000000001]}}\n{"a":{"b":[2.5]}}\n',
    b'{"a":' + b"[" * 200 + b"]" * 200 + b'}\n{"a":[1]}\n{"b":"12345678901234567890"}\n',
    b'{"id":12345678901234567890123,"t":"2026-01-01T00:00:00.120Z"}\r\n{"id":1,"t":"x"}\n',
])
def test_decoding_is_the_same_with_either(block: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = decode_jsonl_lines(block, "p", _at, newlines=bytescan.lf_offsets(block))
    monkeypatch.setattr(bytescan, "_bytescan", None)
    pure = decode_jsonl_lines(block, "p", _at, newlines=bytescan.lf_offsets(block))
    assert compiled[0].equals(pure[0])
    assert compiled[1] == pure[1]
    assert (compiled[2] is None) == (pure[2] is None)
    if compiled[2] is not None and pure[2] is not None:
        assert np.array_equal(compiled[2], pure[2])
