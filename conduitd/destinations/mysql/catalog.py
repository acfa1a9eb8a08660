"""A live MySQL table's columns, from information_schema, as the Arrow types values are cast to."""

from __future__ import annotations

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.mysql.driver import MysqlDriver

_INTEGERS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"}
_QUERY = ("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, TABLE_NAME "
          "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION")


def column_from_catalog(name: str, data_type: str, column_type: str, precision: int | None,
                        scale: int | None) -> Column:
    """The column of a live table; types without an Arrow counterpart travel as text."""
    kind, sql = data_type.lower(), column_type
    if kind == "tinyint" and column_type.lower().startswith("tinyint(1)"):
        return Column(name, pa.bool_(), sql, native=kind)
    if kind in _INTEGERS:
        if kind == "bigint" and "unsigned" in column_type.lower():
            return Column(name, pa.decimal128(20, 0), sql, native=kind)
        return Column(name, pa.int64(), sql, native=kind)
    if kind == "float":
        return Column(name, pa.float32(), sql, native=kind)
    if kind in ("double", "real"):
        return Column(name, pa.float64(), sql, native=kind)
    if kind == "decimal" and precision is not None:
        scale = scale or 0
        decimal = pa.decimal128 if precision <= 38 else pa.decimal256
        return Column(name, decimal(precision, scale), sql, native=kind)
    if kind in ("datetime", "timestamp"):
        return Column(name, pa.timestamp("us", tz="UTC"), sql, native=kind)
    if kind == "date":
        return Column(name, pa.date32(), sql, native=kind)
    if kind in _BINARY:
        return Column(name, pa.binary(), sql, native=kind)
    return Column(name, pa.string(), sql, json=kind == "json", native=kind)


async def table_columns(driver: MysqlDriver, table: str) -> dict[str, Column] | None:
    """The live table's columns in order, or None when it does not exist."""
    rows = [r for r in await driver.fetch(_QUERY, (driver.database, table)) if r[5] == table]
    if not rows:
        return None if not await driver.table_exists(table) else {}
    return {str(r[0]): column_from_catalog(str(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows}
