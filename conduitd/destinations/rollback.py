"""Rolling back to the end, whatever cancels the task meanwhile.

`asyncio.shield` alone keeps a rollback running when the awaiting task is cancelled, but lets the
task go on at once: the connection is then still busy with the ROLLBACK while the caller reuses it
(asyncpg: "another operation is in progress") or closes it. `finish` waits for the rollback to
end, however many cancellations arrive, and then delivers the cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def finish(rollback: Awaitable[None]) -> None:
    """Await `rollback` to its end; a cancellation meanwhile is raised after it, not instead of it."""
    work = asyncio.ensure_future(rollback)
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            if work.cancelled():
                raise  # the rollback itself was cancelled: nothing more to wait for
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    work.result()
