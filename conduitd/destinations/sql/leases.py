"""Leases in a SQL destination, written once over the driver adapter: which replica reads which
partition of a pipeline (a database table, later a Kinesis shard), for how long, and in which
epoch. Each operation is one statement, atomic on its own: a claim is a conditional UPDATE (or the
INSERT of a partition never claimed), so two replicas never both win. Expiry is judged by the
destination's own clock.

Rows: `kind = 'lease'` for a partition (pipeline, partition); `kind = 'replica'` for a replica's
heartbeat (pipeline '', partition = the owner), so each replica can count the live ones and take
its fair share."""

from __future__ import annotations

from dataclasses import dataclass

from conduitd.destinations.sql.driver import SqlDriver

LEASES = "conduitd_leases"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    pipeline: str
    partition: str
    owner: str
    epoch: int
    live: bool
    """Not expired (by the destination's clock)."""
    kind: str = "lease"


class LeaseBook:
    """See the module docstring; one per connection (`driver`)."""

    def __init__(self, driver: SqlDriver) -> None:
        self.driver = driver

    def _name(self, column: str) -> str:
        q = self.driver.types.quote
        return f"{q}{column}{q}"

    def _p(self, count: int) -> list[str]:
        return [self.driver.param(n) for n in range(1, count + 1)]

    async def create_table(self) -> None:
        t = self.driver.types
        await self.driver.create_missing({LEASES: (
            f"CREATE TABLE IF NOT EXISTS {self.driver.table(LEASES)} ("
            f"pipeline {t.pipeline_text} NOT NULL, {self._name('partition')} {t.partition_text} NOT NULL, "
            f"kind {t.pipeline_text} NOT NULL, grp {t.text} NOT NULL, owner {t.text} NOT NULL, "
            f"epoch bigint NOT NULL, expires_at double precision NOT NULL, "
            f"PRIMARY KEY (pipeline, {self._name('partition')})){t.table_options}")})

    async def claim(self, pipeline: str, partition: str, group: str, owner: str, ttl: float) -> int | None:
        """Take the lease if it is expired, released, this owner's already, or never claimed: the
        new epoch (one more than the last), or None when another owner holds it."""
        t, table, part = self.driver.types, self.driver.table(LEASES), self._name("partition")
        p = self._p(6)  # owner twice: `?` and `%s` placeholders are positional
        taken = await self.driver.execute(
            f"UPDATE {table} SET owner = {p[0]}, epoch = epoch + 1, expires_at = {t.seconds_now} + {p[1]}, "
            f"grp = {p[2]} WHERE pipeline = {p[3]} AND {part} = {p[4]} AND kind = 'lease' "
            f"AND (expires_at < {t.seconds_now} OR owner = {p[5]})",
            (owner, float(ttl), group, pipeline, partition, owner))
        if not taken:
            p = self._p(5)
            taken = await self.driver.execute(
                f"INSERT INTO {table} (pipeline, {part}, kind, grp, owner, epoch, expires_at) "
                f"VALUES ({p[0]}, {p[1]}, 'lease', {p[2]}, {p[3]}, 1, {t.seconds_now} + {p[4]}) {t.keep_existing}",
                (pipeline, partition, group, owner, float(ttl)))
        if not taken:
            return None
        p = self._p(3)
        rows = await self.driver.fetch(f"SELECT epoch FROM {table} WHERE pipeline = {p[0]} AND {part} = {p[1]} "
                                       f"AND owner = {p[2]}", (pipeline, partition, owner))
        return int(rows[0][0]) if rows else None

    async def renew(self, pipeline: str, partition: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease by `ttl` from now; False when it is no longer this owner's in this epoch
        (it expired and another replica took it)."""
        t, table, part = self.driver.types, self.driver.table(LEASES), self._name("partition")
        p = self._p(5)
        return await self.driver.execute(
            f"UPDATE {table} SET expires_at = {t.seconds_now} + {p[0]} WHERE pipeline = {p[1]} AND {part} = {p[2]} "
            f"AND owner = {p[3]} AND epoch = {p[4]} AND expires_at >= {t.seconds_now}",
            (float(ttl), pipeline, partition, owner, epoch)) == 1

    async def release(self, pipeline: str, partition: str, owner: str, epoch: int) -> None:
        """Let the lease go at once (on shutdown, or to leave a newcomer its share)."""
        table, part = self.driver.table(LEASES), self._name("partition")
        p = self._p(4)
        await self.driver.execute(f"UPDATE {table} SET expires_at = 0 WHERE pipeline = {p[0]} AND {part} = {p[1]} "
                                  f"AND owner = {p[2]} AND epoch = {p[3]}", (pipeline, partition, owner, epoch))

    async def heartbeat(self, group: str, owner: str, ttl: float) -> None:
        """This replica is alive in `group` for `ttl` more seconds."""
        t, table, part = self.driver.types, self.driver.table(LEASES), self._name("partition")
        p = self._p(3)
        changed = await self.driver.execute(
            f"UPDATE {table} SET expires_at = {t.seconds_now} + {p[0]} WHERE pipeline = '' AND {part} = {p[1]} "
            f"AND grp = {p[2]} AND kind = 'replica'", (float(ttl), owner, group))
        if not changed:
            p = self._p(4)
            await self.driver.execute(
                f"INSERT INTO {table} (pipeline, {part}, kind, grp, owner, epoch, expires_at) "
                f"VALUES ('', {p[0]}, 'replica', {p[1]}, {p[2]}, 0, {t.seconds_now} + {p[3]}) {t.keep_existing}",
                (owner, group, owner, float(ttl)))

    async def census(self, group: str) -> list[LeaseRow]:
        """Every lease and heartbeat of `group`, with whether it is live."""
        t, table, part = self.driver.types, self.driver.table(LEASES), self._name("partition")
        rows = await self.driver.fetch(
            f"SELECT pipeline, {part}, owner, epoch, CASE WHEN expires_at >= {t.seconds_now} THEN 1 ELSE 0 END, kind "
            f"FROM {table} WHERE grp = {self.driver.param(1)} ORDER BY pipeline, {part}", (group,))
        return [LeaseRow(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bool(r[4]), str(r[5])) for r in rows]

    async def list_leases(self) -> list[LeaseRow]:
        t, table, part = self.driver.types, self.driver.table(LEASES), self._name("partition")
        if not await self.driver.table_exists(LEASES):
            return []
        rows = await self.driver.fetch(
            f"SELECT pipeline, {part}, owner, epoch, CASE WHEN expires_at >= {t.seconds_now} THEN 1 ELSE 0 END, kind "
            f"FROM {table} WHERE kind = 'lease' ORDER BY pipeline, {part}")
        return [LeaseRow(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bool(r[4]), str(r[5])) for r in rows]
