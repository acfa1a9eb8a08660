"""A daemon with the control plane, run in the test's own event loop, and API clients with
tokens of given roles and projects."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from conduitd.api.tokens import hash_token, new_token
from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime

TOKENS = {  # name -> (role, projects)
    "viewer-a": ("viewer", ["a"]), "operator-a": ("operator", ["a"]), "admin-a": ("admin", ["a"]),
    "viewer-b": ("viewer", ["b"]), "operator-b": ("operator", ["b"]), "admin-all": ("admin", ["*"]),
}


@dataclass
class Daemon:
    runtime: Runtime
    base: str
    tokens: dict[str, str] = field(default_factory=dict)
    task: asyncio.Task[Any] | None = None

    def client(self, who: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=60)

    async def get(self, who: str, path: str, **kw: Any) -> httpx.Response:
        async with self.client(who) as c:
            return await c.get(f"/api/v1{path}", **kw)

    async def post(self, who: str, path: str, **kw: Any) -> httpx.Response:
        async with self.client(who) as c:
            return await c.post(f"/api/v1{path}", **kw)

    async def pipeline(self, who: str, name: str) -> dict[str, Any]:
        answer = await self.get(who, f"/pipelines/{name}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def write_tokens(path: Path) -> dict[str, str]:
    tokens = {name: new_token() for name in TOKENS}
    entries = [{"name": n, "sha256": hash_token(t), "role": TOKENS[n][0], "projects": TOKENS[n][1]}
               for n, t in tokens.items()]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return tokens


@asynccontextmanager
async def serving(tmp_path: Path, config: dict[str, Any], only: tuple[str, ...] = ()) -> AsyncIterator[Daemon]:
    """Run the daemon of `config` (its service.api set to a free port and test tokens) until
    the block ends; then stop it as SIGTERM would, and wait for it."""
    tokens = write_tokens(tmp_path / "tokens.yml")
    service = config.setdefault("service", {})
    service["api"] = {"port": 0, "tokens_file": str(tmp_path / "tokens.yml"), **service.get("api", {})}
    path = tmp_path / "conduitd.yml"
    path.write_text(yaml.safe_dump(config))
    runtime = Runtime(load_config(path), only)
    task = asyncio.create_task(runtime.run())
    try:
        await until(lambda: (runtime.api is not None and runtime.api._task is not None) or task.done(),
                    "the API to start")
        if task.done():
            task.result()
        assert runtime.api is not None
        yield Daemon(runtime, f"http://127.0.0.1:{runtime.api.port}", tokens, task)
    finally:
        runtime.stop.set()
        await asyncio.wait_for(asyncio.shield(task), 60) if not task.done() else None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 60) -> None:
    """Wait for `condition` (checked every 50 ms), failing the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        found = connection.execute(sql, params).fetchall()
        connection.commit()
        return found
    finally:
        connection.close()
