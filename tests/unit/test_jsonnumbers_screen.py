"""The word-wise screen for long digit runs never misses one (it may say maybe for none)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.jsonnumbers import _LONG, _may_have_a_long_run, exact_numbers


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"0", b" ", b"e", b"-"]), max_size=90), st.integers(0, 7))
def test_never_misses_a_run(pieces: list[bytes], shift: int) -> None:
    shapes = b" " * shift + b"".join(pieces)
    if b"0" * _LONG in shapes:
        assert _may_have_a_long_run(shapes)


def test_a_long_fraction_is_still_found() -> None:
    import io

    import pyarrow as pa
    import pyarrow.json as pajson

    block = b'{"id":1,"x":0.5}\n{"id":2,"x":0.1000000000000000000001}\n{"id":3,"x":2.25}\n'
    table = pajson.read_json(io.BytesIO(block))
    exact = exact_numbers(table, block)
    assert exact is not None
    assert pa.types.is_decimal(exact.table.schema.field("x").type)
    assert str(exact.table.column("x")[1].as_py()) == "0.1000000000000000000001"
