"""Types, names and DDL text for MySQL and MariaDB (pure; safe in worker threads).

Types a new table gets, from the batch's Arrow types:

    boolean                  TINYINT(1) (read back as 0/1)
    integers                 BIGINT; uint64 DECIMAL(20,0) (every value exact)
    float32 / float64        FLOAT / DOUBLE (NaN and infinities are refused: MySQL cannot store them)
    decimal(p,s)             DECIMAL(p,s) while p <= 65 and s <= 30, else LONGTEXT (exact text)
    timestamp (any zone)     DATETIME(6), in UTC: DATETIME has no time zone, so conduitd stores the
                             UTC time (the session's time_zone is +00:00) and reads it back as UTC
    date                     DATE
    binary                   LONGBLOB
    nested (lists, structs)  JSON (MariaDB: LONGTEXT checked by JSON_VALID)
    a source's JSON column   JSON (its text as it is; MySQL 8 stores it normalised)
    a source's uuid column   UUID on MariaDB 10.7 and later, else CHAR(36)
    text, anything else      LONGTEXT

A column of the table's primary key (`unique_key`) cannot be an unbounded TEXT/BLOB in MySQL: it
gets VARCHAR(255) (VARBINARY(255) for binary). A longer key value is refused and dead-lettered,
never cut (the session runs in strict mode). 255 characters of utf8mb4 are 1,020 bytes: three
text key columns fit InnoDB's 3,072-byte index limit.

Tables are InnoDB, utf8mb4 with a binary collation, so text compares exactly (the default
collations ignore case: 'a' and 'A' would be one key). On MariaDB the collation is
utf8mb4_nopad_bin (trailing spaces count too); MySQL's utf8mb4_bin pads ('a' = 'a ' as keys).

Identifiers are always quoted with backticks (a backtick inside is doubled); at most 64
characters; no NUL, no trailing space, no character outside the Basic Multilingual Plane. MySQL
compares column names ignoring case (and accents): `name_key` folds case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from conduitd.core.schema import Column, create_table_sql, extension_name
from conduitd.destinations.mysql.literals import Values, encode_values

MAX_IDENTIFIER_CHARS = 64
MAX_COLUMNS = 1017  # InnoDB's limit (MySQL's own is 4,096)
KEY_TEXT = "VARCHAR(255)"
KEY_BINARY = "VARBINARY(255)"
UUID_TEXT = "CHAR(36)"
"""A uuid's column where the server has no UUID type (MySQL, MariaDB before 10.7)."""
_UNBOUNDED = {"LONGTEXT": KEY_TEXT, "JSON": KEY_TEXT, "LONGBLOB": KEY_BINARY}


def quote(identifier: str) -> str:
    """Quote an identifier from data: embedded backticks are doubled, so nothing can escape it."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot contain a NUL character")
    return "`" + identifier.replace("`", "``") + "`"


def name_problem(name: str) -> str | None:
    """Why MySQL cannot take `name` as a column (or a table), or None."""
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    if not name:
        return "column name '' is empty: MySQL names cannot be empty"
    if "\x00" in name:
        return f"column name {shown} contains a NUL character, which MySQL names cannot hold"
    try:
        name.encode()
    except UnicodeEncodeError:
        return f"column name {shown} is not valid Unicode text (it holds a lone surrogate)"
    if len(name) > MAX_IDENTIFIER_CHARS:
        return f"column name {shown} is longer than the {MAX_IDENTIFIER_CHARS} characters MySQL allows"
    if name.endswith(" "):
        return f"column name {shown} ends with a space, which MySQL names cannot"
    if any(ord(c) > 0xFFFF for c in name):
        return f"column name {shown} holds a character outside the Basic Multilingual Plane, which MySQL names cannot"
    return None


def column_for(name: str, arrow: pa.DataType, uuid_sql: str = UUID_TEXT) -> Column:
    """The column a new table gets for values of this Arrow type (see the module docstring);
    `uuid_sql` is the server's type for uuids (`UUID` or `CHAR(36)`)."""
    extension = extension_name(arrow)
    if extension == "arrow.uuid":
        return Column(name, pa.string(), uuid_sql, native=uuid_sql.split("(")[0].lower())
    if extension == "arrow.json":
        return Column(name, pa.string(), "JSON", json=True, native="json")
    if pa.types.is_boolean(arrow):
        return Column(name, pa.bool_(), "TINYINT(1)", native="tinyint")
    if pa.types.is_integer(arrow):
        if pa.types.is_uint64(arrow):
            return Column(name, pa.decimal128(20, 0), "DECIMAL(20,0)", native="decimal")
        return Column(name, pa.int64(), "BIGINT", native="bigint")
    if pa.types.is_float32(arrow):
        return Column(name, pa.float32(), "FLOAT", native="float")
    if pa.types.is_floating(arrow):
        return Column(name, pa.float64(), "DOUBLE", native="double")
    if pa.types.is_decimal(arrow) and arrow.precision <= 65 and arrow.scale <= 30 and arrow.scale >= 0:
        kind = pa.decimal128 if arrow.precision <= 38 else pa.decimal256
        return Column(name, kind(arrow.precision, arrow.scale), f"DECIMAL({arrow.precision},{arrow.scale})",
                      native="decimal")
    if pa.types.is_timestamp(arrow):
        return Column(name, pa.timestamp("us", tz="UTC"), "DATETIME(6)", native="datetime")
    if pa.types.is_date(arrow):
        return Column(name, pa.date32(), "DATE", native="date")
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return Column(name, pa.binary(), "LONGBLOB", native="longblob")
    if pa.types.is_nested(arrow):
        return Column(name, pa.string(), "JSON", json=True, native="json")
    return Column(name, pa.string(), "LONGTEXT", native="longtext")


def uuid_type(version: str) -> str:
    """The type of a uuid column on a server of this `SELECT VERSION()`: MariaDB has one since 10.7."""
    match = re.search(r"(\d+)\.(\d+)\.\d+-mariadb", version.lower())  # after a `5.5.5-` prefix too
    if match is None:
        return UUID_TEXT
    return "UUID" if (int(match[1]), int(match[2])) >= (10, 7) else UUID_TEXT


class MysqlDialect:
    """Types, names and DDL text for MySQL and MariaDB (pure; safe in worker threads).
    `collation`: of new tables; the destination sets MariaDB's once connected, before any batch,
    and `uuid_sql` (`UUID` on MariaDB 10.7 and later)."""

    max_identifier_bytes = MAX_IDENTIFIER_CHARS * 3  # 64 characters of the BMP in UTF-8; checked by name_problem
    max_columns = MAX_COLUMNS

    def __init__(self, database: str, collation: str = "utf8mb4_bin") -> None:
        self.database = database
        self.collation = collation
        self.uuid_sql = UUID_TEXT

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(name)}"

    def name_problem(self, name: str) -> str | None:
        return name_problem(name)

    def name_key(self, name: str) -> str:
        return name.casefold()  # column names compare ignoring case

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        return column_for(name, arrow, self.uuid_sql)

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        keyed = [Column(c.name, c.arrow, _UNBOUNDED.get(c.sql.upper(), c.sql), c.json, c.native)
                 if c.name in key else c for c in columns]
        return (create_table_sql(self.table(table), keyed, key, quote)
                + f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}")

    def add_column_ddl(self, table: str, column: Column) -> str:
        return f"ALTER TABLE {self.table(table)} ADD COLUMN {quote(column.name)} {column.sql}"

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        # MODIFY converts the stored values (numbers to a wider number type: exact).
        return f"ALTER TABLE {self.table(table)} MODIFY COLUMN {quote(column.name)} {column.sql}"

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True  # MODIFY COLUMN gives the column the new type

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> Values:
        return encode_values(rows, columns)
