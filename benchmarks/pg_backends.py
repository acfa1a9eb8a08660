"""The CPU seconds of one path's own PostgreSQL backends, on a server on this machine shared with
other work: the backends are found by application_name in pg_stat_activity and their CPU read from
/proc while the path runs (every `every` seconds, and once more by `read_before_close` for a
connection the path closes itself), so other sessions' backends are not billed to the path.

    async with BackendCpu(dsn, ["bench-files-123", "conduitd myschema"]) as own:
        ...  # run the path
    own.seconds  # CPU seconds of the backends seen (a backend's last `every` seconds may be missed)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from benchmarks.sampling import Sampler

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """CPU seconds of one process (Linux), 0 when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class BackendCpu(Sampler):
    """Samples the backends of the given application names until the `async with` block ends."""

    def __init__(self, dsn: str, applications: Sequence[str], every: float = 0.1) -> None:
        super().__init__(every)
        self.dsn = dsn
        self.applications = [a[:63] for a in applications]
        self.seen: dict[int, float] = {}
        self._conn: asyncpg.Connection | None = None

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())

    def read(self, pid: int) -> None:
        cpu = process_cpu(pid)
        if cpu:
            self.seen[pid] = max(self.seen.get(pid, 0.0), cpu)

    async def begin(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)

    async def sample(self) -> None:
        assert self._conn is not None
        rows = await self._conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1::text[])",
                                      self.applications)
        for row in rows:
            self.read(int(row["pid"]))

    async def end(self) -> None:
        if self._conn is not None:
            await self._conn.close()
