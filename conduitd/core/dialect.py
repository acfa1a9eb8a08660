"""What the pure core needs to know of a destination: its types, names and DDL text (the
`Dialect`); implemented by each destination, used by the evolution plan and batch preparation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa

from conduitd.core.schema import Column


class Dialect(Protocol):
    """Pure, thread-safe knowledge of one kind of destination; identifiers are always quoted."""

    @property
    def max_identifier_bytes(self) -> int | None:
        """The longest table or column name the destination keeps whole (None: no limit)."""

    @property
    def max_columns(self) -> int:
        """The most columns a table of this destination can have."""

    def name_problem(self, name: str) -> str | None:
        """Why the destination cannot take `name` as a new column (too long, a system column's
        name, empty, a NUL...), as a sentence naming the destination; None when it can. A column
        of that name that the table already has is not asked about."""

    def name_key(self, name: str) -> str:
        """The form under which the destination compares column names: two names with one key
        are one column to it (SQLite ignores ASCII case; PostgreSQL's quoted names are exact)."""

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        """The column a new table gets for values of this Arrow type."""

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str: ...

    def add_column_ddl(self, table: str, column: Column) -> str: ...

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        """DDL that gives an existing column `column`'s type; None when the dialect needs none."""

    def widening_holds(self, old: Column, new: Column) -> bool:
        """Whether values cast for `new` are stored as they are in a column declared `old` once
        `widen_column_ddl` has run (False: the store would convert them, so no such widening)."""

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> object:
        """The rows in the form `Transaction.write_rows` sends fastest (prepared off the event loop)."""
