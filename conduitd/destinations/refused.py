"""A write that isolated its refused rows itself."""

from __future__ import annotations

from collections.abc import Sequence

from conduitd.destinations.base import RowsRefused


class RowsPartlyRefused(RowsRefused):
    """Raised by `Transaction.write_rows` when it found every row of the write the destination
    refuses and wrote all the others (PostgreSQL: an upsert's merge, retried row by row inside
    the server in one statement). Unlike a plain RowsRefused, the write's effects stand: the
    caller keeps them and sends only `rows` (index in the written rows, reason) to the DLQ."""

    def __init__(self, rows: Sequence[tuple[int, str]]) -> None:
        super().__init__(f"{len(rows)} rows refused", rows[0][0] if rows else None)
        self.rows = list(rows)
