"""A PostgreSQL database of a test module's own. The late-commit bound of the database sources
looks at every write transaction of the source's database, so tests of them must not share one
with other tests (a parallel run, or their own destination's commits when that matters)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def own_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>` on the server of `server_dsn`, yield its DSN, drop it (for a
    module-scoped fixture: `yield from own_database(pg_dsn, "conduitd_src")`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield server_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE "{name}" WITH (FORCE)'))
