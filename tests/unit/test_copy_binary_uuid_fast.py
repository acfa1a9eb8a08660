"""uuid text to bytes by `bytes.fromhex` gives the arithmetic path's bytes, and leaves every
malformed value (whitespace fromhex would skip, non-ASCII) to the arithmetic path, which names it."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conduitd.destinations.postgres.copy_binary_types as types
from conduitd.destinations.postgres.copy_binary import encode_copy_binary
from conduitd.destinations.postgres.copy_binary_uuid import uuid_bytes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.uuids().map(str), st.uuids().map(lambda u: str(u).upper())),
                min_size=1, max_size=30))
def test_fast_equals_arithmetic(values: list[str | None]) -> None:
    table = pa.table({"u": pa.array(values, pa.string())})
    fast = encode_copy_binary(table, ["uuid"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(types, "uuid_bytes", lambda chars: None)  # the exact path alone
        slow = encode_copy_binary(table, ["uuid"])
    assert fast == slow
    for value in values:
        if value is not None:
            assert uuid.UUID(value).bytes in fast


@pytest.mark.parametrize("bad", ["12  5678-9abc-def0-1234-56789abcdef0", "12\t\t5678-9abc-def0-1234-56789abcdef0",
                                 "1234 678-9abc-def0-1234-56789abcdef0", "\u00e92345678-9abc-def0-1234-56789abcdef"])
def test_whitespace_and_non_ascii_are_malformed(bad: str) -> None:
    table = pa.table({"u": pa.array(["12345678-9abc-def0-1234-56789abcdef0", bad])})
    with pytest.raises(ValueError, match="uuid"):
        encode_copy_binary(table, ["uuid"])
    chars = np.frombuffer(bad.encode(), dtype=np.uint8)
    if len(chars) == 36:
        assert uuid_bytes(chars.reshape(1, 36)) is None
