"""`conduitd schema` shows the column `run` would create: a text field its source marked as uuid or
JSON is shown as the destination's uuid/jsonb column, not as text."""

from __future__ import annotations

import pyarrow as pa

from conduitd.core.schema import LOGICAL
from conduitd.destinations.postgres.dialect import PostgresDialect
from conduitd.runtime.inspection import source_columns


def test_inspection_shows_uuid_and_jsonb_for_marked_text() -> None:
    fields = [pa.field("u", pa.string(), metadata={LOGICAL: b"uuid"}),
              pa.field("j", pa.string(), metadata={LOGICAL: b"json"}), pa.field("t", pa.string())]
    rows = pa.Table.from_arrays([pa.array(["00000000-0000-0000-0000-000000000001"]), pa.array(["{}"]),
                                 pa.array(["x"])], schema=pa.schema(fields))
    shown = {c.name: c.sql for c in source_columns(PostgresDialect("public"), rows)}
    assert shown == {"u": "uuid", "j": "jsonb", "t": "text"}
