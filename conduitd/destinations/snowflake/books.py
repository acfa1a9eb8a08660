"""The shared SQL bookkeeping, with the one statement Snowflake spells differently: a
checkpoint's first write. Snowflake has no `INSERT ... ON CONFLICT DO NOTHING` (and enforces no
primary key), so it is an `INSERT ... SELECT ... WHERE NOT EXISTS` of that key. Two writers
committing the same partition's first batch at the same instant could both insert it (a MERGE
would lock the table, but fakesnow cannot run one in a transaction that wrote already)."""

from __future__ import annotations

from conduitd.core.records import Position, position_text
from conduitd.destinations.sql import CHECKPOINTS, Bookkeeping


class SnowflakeBookkeeping(Bookkeeping):
    """See the module docstring."""

    control = False  # usage needs an insert that leaves an existing row alone (see the docstring)

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        if expected is not None:
            return await super().compare_and_set(pipeline, partition, expected, new)
        part, table = self._name("partition"), self.driver.table(CHECKPOINTS)
        sql = (f"INSERT INTO {table} (pipeline, {part}, position, updated_at) SELECT ?, ?, ?, ? "
               f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE pipeline = ? AND {part} = ?)")
        inserted = await self.driver.execute(sql, (pipeline, partition, position_text(new), self.driver.now(),
                                                   pipeline, partition))
        return inserted == 1
