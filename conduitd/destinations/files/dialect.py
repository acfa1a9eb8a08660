"""Types and DDL of file destinations (pure; safe in worker threads).

A table here is a list of parts plus the columns the state file records; DDL is a small JSON
statement the transaction applies to those columns (no file is rewritten: later parts carry the
new columns, earlier ones read as null there):

    {"op": "create", "table": "t", "columns": [["id", "int64"], ["name", "string"]]}
    {"op": "add", "table": "t", "column": ["score", "double"]}
    {"op": "alter", "table": "t", "column": ["n", "double"]}

Types are Arrow type names; nested values are kept as JSON text (`json`), so one column keeps one
type whatever shape its objects take from batch to batch.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.errors import ConduitError

_FIXED: dict[str, pa.DataType] = {
    "int64": pa.int64(), "uint64": pa.uint64(), "double": pa.float64(), "bool": pa.bool_(),
    "string": pa.string(), "json": pa.string(), "binary": pa.binary(), "date32": pa.date32(),
    "timestamp[us]": pa.timestamp("us"), "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}
_DECIMAL = re.compile(r"decimal128\((\d+), ?(\d+)\)")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def column_of(name: str, type_name: str) -> Column:
    """The column a type name of this dialect declares (the inverse of `FileDialect.column_for`)."""
    if type_name in _FIXED:
        return Column(name, _FIXED[type_name], type_name, json=type_name == "json")
    decimal = _DECIMAL.fullmatch(type_name)
    if decimal is None:
        raise ConduitError(f"file destination: unknown column type {type_name!r} in its state file")
    return Column(name, pa.decimal128(int(decimal[1]), int(decimal[2])), f"decimal128({decimal[1]}, {decimal[2]})")


@dataclass(frozen=True)
class Ddl:
    """A parsed statement: `op` create (with `columns`), add or alter (one column in `columns`)."""

    op: str
    table: str
    columns: tuple[Column, ...]


def parse_ddl(statement: str) -> Ddl:
    """The statement as a value; ConduitError when it is not DDL of `FileDialect`."""
    try:
        data = orjson.loads(statement)
        op, table = data["op"], data["table"]
        pairs = data["columns"] if op == "create" else [data["column"]]
        if op not in ("create", "add", "alter") or not isinstance(table, str):
            raise ValueError(op)
        return Ddl(op, table, tuple(column_of(str(n), str(t)) for n, t in pairs))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ConduitError(f"file destination: not DDL of its dialect: {statement[:200]!r}") from None


def _ddl(op: str, table: str, **rest: object) -> str:
    return orjson.dumps({"op": op, "table": table, **rest}).decode()


class FileDialect:
    """See the module docstring. Names are kept exactly (any text but NUL and lone surrogates)."""

    max_identifier_bytes = None
    max_columns = 10_000

    def name_problem(self, name: str) -> str | None:
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        if not name:
            return "an empty column name cannot be a column of a file destination (CSV headers need a name)"
        if "\x00" in name:
            return f"column name {shown} contains a NUL character, which file destinations refuse"
        try:
            name.encode()
        except UnicodeEncodeError:
            return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
        return None

    def name_key(self, name: str) -> str:
        return name

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        if pa.types.is_uint64(arrow):
            return column_of(name, "uint64")
        if pa.types.is_integer(arrow):
            return column_of(name, "int64")
        if pa.types.is_floating(arrow):
            return column_of(name, "double")
        if pa.types.is_boolean(arrow):
            return column_of(name, "bool")
        if pa.types.is_decimal(arrow) and arrow.precision <= 38:
            return column_of(name, f"decimal128({arrow.precision}, {arrow.scale})")
        if pa.types.is_timestamp(arrow):
            return column_of(name, "timestamp[us, tz=UTC]" if arrow.tz else "timestamp[us]")
        if pa.types.is_date(arrow):
            return column_of(name, "date32")
        if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
            return column_of(name, "binary")
        if pa.types.is_nested(arrow):
            return column_of(name, "json")
        return column_of(name, "string")

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return _ddl("create", table, columns=[[c.name, c.sql] for c in columns])

    def add_column_ddl(self, table: str, column: Column) -> str:
        return _ddl("add", table, column=[column.name, column.sql])

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return _ddl("alter", table, column=[column.name, column.sql])

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # later parts are written with the new type; readers unify the parts

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> object:
        return None  # the writer takes the Arrow table as it is
