"""A live Snowflake table's columns, from information_schema, as the Arrow types values are cast to."""

from __future__ import annotations

import pyarrow as pa

from conduitd.core.schema import Column
from conduitd.destinations.snowflake.dialect import quote
from conduitd.destinations.snowflake.driver import SnowflakeDriver

_TIMESTAMPS = {"TIMESTAMP_TZ", "TIMESTAMP_LTZ", "TIMESTAMP_NTZ", "TIMESTAMP", "DATETIME"}


def column_from_catalog(name: str, data_type: str, precision: int | None, scale: int | None) -> Column:
    """The column of a live table; types without an Arrow counterpart travel as text."""
    kind = data_type.upper()
    if kind in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "FIXED"):
        precision, scale = precision or 38, scale or 0
        if scale == 0:
            return Column(name, pa.int64(), f"NUMBER({precision},0)", native="number")
        return Column(name, pa.decimal128(precision, scale), f"NUMBER({precision},{scale})", native="number")
    if kind in ("FLOAT", "DOUBLE", "REAL", "DOUBLE PRECISION"):
        return Column(name, pa.float64(), "FLOAT", native="float")
    if kind == "BOOLEAN":
        return Column(name, pa.bool_(), "BOOLEAN", native="boolean")
    if kind in _TIMESTAMPS:
        return Column(name, pa.timestamp("us", tz="UTC"), kind, native=kind.lower())
    if kind == "DATE":
        return Column(name, pa.date32(), "DATE", native="date")
    if kind in ("BINARY", "VARBINARY"):
        return Column(name, pa.binary(), "BINARY", native="binary")
    return Column(name, pa.string(), kind if kind != "TEXT" else "VARCHAR", json=kind in ("VARIANT", "OBJECT", "ARRAY"),
                  native=kind.lower())


async def table_columns(driver: SnowflakeDriver, table: str) -> dict[str, Column] | None:
    """The live table's columns in order, or None when it does not exist."""
    rows = await driver.fetch(
        f"SELECT column_name, data_type, numeric_precision, numeric_scale FROM "
        f"{quote(driver.database)}.information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", (driver.schema, table))
    if not rows:
        return None if not await driver.table_exists(table) else {}
    return {str(r[0]): column_from_catalog(str(r[0]), str(r[1]), r[2], r[3]) for r in rows}
