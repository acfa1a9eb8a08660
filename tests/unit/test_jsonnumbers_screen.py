"""A long fraction is found and kept exact (the screen itself: test_bytescan)."""

from __future__ import annotations

from conduitd.core.jsonnumbers import exact_numbers


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
