"""The in-memory destination's dialect (a `conduitd.core.dialect.Dialect`, pure) and the small
DDL language it writes and the in-memory store runs:

    CREATE TABLE "t" ("a" BIGINT, "b" TEXT, PRIMARY KEY ("a"))
    ALTER TABLE "t" ADD COLUMN "c" DOUBLE
    ALTER TABLE "t" ALTER COLUMN "c" TYPE NUMERIC(38,9)

Identifiers are always quoted (embedded quotes doubled), so any name, `a"; DROP TABLE x; --`
included, is one column of exactly that name. Types: BIGINT, DOUBLE, BOOLEAN, TEXT, JSON (nested
values as JSON text), NUMERIC(p,s), TIMESTAMPTZ, TIMESTAMP, DATE, BYTEA. Limits are settable, so
the evolution plan's name and column limits can be tested without a database.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from conduitd.core.schema import Column, create_table_sql
from conduitd.errors import ConduitError


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_FIXED: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "TEXT": pa.string(),
    "JSON": pa.string(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(), "BYTEA": pa.binary(),
}
_NUMERIC = re.compile(r"NUMERIC\((\d+),(\d+)\)")


def column_of(name: str, sql: str) -> Column:
    """The column a type of this dialect declares (the inverse of `MemoryDialect.column_for`)."""
    if sql in _FIXED:
        return Column(name, _FIXED[sql], sql, json=sql == "JSON")
    numeric = _NUMERIC.fullmatch(sql)
    if numeric is None:
        raise ConduitError(f"memory destination: unknown type {sql!r}")
    return Column(name, pa.decimal128(int(numeric[1]), int(numeric[2])), sql)


@dataclass(frozen=True)
class MemoryPayload:
    """Rows as `MemoryDialect.encode` gives them: column names and one tuple of values per row."""

    names: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]


class MemoryDialect:
    """See the module docstring. `fold_case`: names that differ only in ASCII case are one column
    (as SQLite compares them)."""

    def __init__(self, *, max_identifier_bytes: int | None = None, max_columns: int = 1600,
                 fold_case: bool = False) -> None:
        self._max_identifier_bytes = max_identifier_bytes
        self._max_columns = max_columns
        self.fold_case = fold_case

    @property
    def max_identifier_bytes(self) -> int | None:
        return self._max_identifier_bytes

    @property
    def max_columns(self) -> int:
        return self._max_columns

    def name_problem(self, name: str) -> str | None:
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        if not name:
            return "an empty column name cannot be a column of the memory destination"
        if "\x00" in name:
            return f"column name {shown} contains a NUL character, which the memory destination refuses"
        try:
            size = len(name.encode())
        except UnicodeEncodeError:
            return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
        limit = self._max_identifier_bytes
        if limit is not None and size > limit:
            return f"column name {shown} is longer than the {limit} bytes the memory destination keeps"
        return None

    def name_key(self, name: str) -> str:
        return name.translate(_ASCII_LOWER) if self.fold_case else name

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        if pa.types.is_uint64(arrow):
            return column_of(name, "NUMERIC(20,0)")  # beyond a BIGINT
        if pa.types.is_integer(arrow):
            return column_of(name, "BIGINT")
        if pa.types.is_floating(arrow):
            return column_of(name, "DOUBLE")
        if pa.types.is_boolean(arrow):
            return column_of(name, "BOOLEAN")
        if pa.types.is_decimal(arrow):
            return column_of(name, f"NUMERIC({arrow.precision},{arrow.scale})")
        if pa.types.is_timestamp(arrow):
            return column_of(name, "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP")
        if pa.types.is_date(arrow):
            return column_of(name, "DATE")
        if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
            return column_of(name, "BYTEA")
        if pa.types.is_nested(arrow):
            return column_of(name, "JSON")
        return column_of(name, "TEXT")

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return create_table_sql(quote(table), columns, key, quote)

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column.name)} TYPE {column.sql}"

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # values are kept as the new column's type once its DDL has run

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> MemoryPayload:
        names = tuple(c.name for c in columns)
        values = zip(*(rows.column(i).to_pylist() for i in range(rows.num_columns)), strict=True)
        return MemoryPayload(names, tuple(values))


# -- the DDL language ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTable:
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: Column


@dataclass(frozen=True)
class AlterType:
    table: str
    column: Column


Ddl = CreateTable | AddColumn | AlterType
_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|(NUMERIC\(\d+,\d+\))|([A-Z]+)|([(),]))')


class _Tokens:
    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.items: list[tuple[str, str]] = []  # (kind, text): name, word or mark
        at = 0
        while at < len(statement.rstrip()):
            match = _TOKEN.match(statement, at)
            if match is None:
                raise self.error()
            name, numeric, word, mark = match.groups()
            if name is not None:
                self.items.append(("name", name.replace('""', '"')))
            elif numeric or word:
                self.items.append(("word", numeric or word))
            else:
                self.items.append(("mark", mark))
            at = match.end()
        self.items.reverse()

    def error(self) -> ConduitError:
        return ConduitError(f"memory destination: not DDL of its dialect: {self.statement[:200]!r}")

    def take(self, kind: str, text: str | None = None) -> str:
        if not self.items:
            raise self.error()
        got_kind, got = self.items.pop()
        if got_kind != kind or (text is not None and got != text):
            raise self.error()
        return got

    def words(self, *texts: str) -> None:
        for text in texts:
            self.take("word", text)

    def peek(self) -> tuple[str, str] | None:
        return self.items[-1] if self.items else None

    def end(self) -> None:
        if self.items:
            raise self.error()


def parse_ddl(statement: str) -> Ddl:
    """The statement as a value; ConduitError when it is not DDL of `MemoryDialect`."""
    tokens = _Tokens(statement)
    first = tokens.take("word")
    if first == "CREATE":
        tokens.words("TABLE")
        table = tokens.take("name")
        tokens.take("mark", "(")
        columns: list[Column] = []
        key: list[str] = []
        while True:
            if tokens.peek() == ("word", "PRIMARY"):
                tokens.words("PRIMARY", "KEY")
                tokens.take("mark", "(")
                key.append(tokens.take("name"))
                while tokens.peek() == ("mark", ","):
                    tokens.take("mark", ",")
                    key.append(tokens.take("name"))
                tokens.take("mark", ")")
            else:
                name = tokens.take("name")
                columns.append(column_of(name, tokens.take("word")))
            if tokens.peek() != ("mark", ","):
                break
            tokens.take("mark", ",")
        tokens.take("mark", ")")
        tokens.end()
        return CreateTable(table, tuple(columns), tuple(key))
    if first != "ALTER":
        raise tokens.error()
    tokens.words("TABLE")
    table = tokens.take("name")
    action = tokens.take("word")
    if action == "ADD":
        tokens.words("COLUMN")
        name = tokens.take("name")
        column = column_of(name, tokens.take("word"))
        tokens.end()
        return AddColumn(table, column)
    if action != "ALTER":
        raise tokens.error()
    tokens.words("COLUMN")
    name = tokens.take("name")
    tokens.words("TYPE")
    column = column_of(name, tokens.take("word"))
    tokens.end()
    return AlterType(table, column)
