"""Take a screenshot of each page of the web UI into docs/ui/ (PNG).

Runs a demo daemon in this process (three pipelines from JSON lines files into SQLite, in a
temporary directory: `orders` with a quality rule that sends negative amounts to the DLQ,
`customers` under `schema_evolution: manual` with a pending change and the rows that wait for it,
`clicks` in another project, paused), feeds it a few rounds of rows, and photographs the pages
in headless Chromium (Debian's package, driven by Playwright) signed in as an admin.

    python scripts/screenshots.py [--out docs/ui] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.async_api import Page, async_playwright, expect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conduitd.api.tokens import hash_token, new_token
from conduitd.configfile import load_config
from conduitd.runtime.supervisor import Runtime

WAIT = 30_000


def demo_config(root: Path, tokens_file: Path) -> dict[str, Any]:
    for name in ("orders", "customers", "clicks"):
        (root / name).mkdir()
    source = {"type": "file", "format": "jsonl", "poll_interval": 0.2}
    batch = {"max_wait": 0.2}
    return {
        "service": {"api": {"port": 0, "tokens_file": str(tokens_file)}},
        "sources": [{"name": f"{n}_files", "path": str(root / n), **source} for n in ("orders", "customers", "clicks")],
        "destinations": [{"name": "warehouse", "type": "sqlite", "path": str(root / "warehouse.db")}],
        "resources": [
            {"name": "orders", "source": "orders_files", "destination": "warehouse", "project": "shop", "batch": batch,
             "quality_checks": [{"column": "amount", "check": "range", "min": 0, "action": "dlq"}]},
            {"name": "customers", "source": "customers_files", "destination": "warehouse", "project": "shop",
             "batch": batch, "schema_evolution": {"mode": "manual", "migrations_dir": str(root / "migrations")}},
            {"name": "clicks", "source": "clicks_files", "destination": "warehouse", "project": "analytics",
             "batch": batch},
        ],
    }


def append(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def feed(root: Path, api: httpx.AsyncClient) -> None:
    """A few rounds of rows, so the charts, timeline, DLQ, usage and audit have something to show."""
    for round_ in range(6):
        first = round_ * 200
        append(root / "orders" / "orders.jsonl", [
            {"id": i, "customer": i % 37, "amount": -5 if i % 50 == 7 else round(i * 1.37, 2)}
            for i in range(first, first + 200)])
        append(root / "clicks" / "clicks.jsonl", [{"id": i, "page": f"/p/{i % 9}"} for i in range(first, first + 300)])
        await until(functools.partial(_written, api, "orders", first + 200), "orders to commit a round")
    append(root / "customers" / "customers.jsonl", [{"id": i, "name": f"customer {i}"} for i in range(40)])
    await until(lambda: _written(api, "customers", 40), "customers to commit")
    append(root / "customers" / "customers.jsonl",
           [{"id": i, "name": f"customer {i}", "tier": "gold"} for i in range(40, 46)])
    await until(lambda: _pending(api, "customers"), "the pending schema change")
    (await api.post("/api/v1/pipelines/clicks/pause", headers={"Idempotency-Key": "demo-pause"})).raise_for_status()


async def _written(api: httpx.AsyncClient, name: str, count: int) -> bool:
    """Whether the pipeline committed `count` rows (to its table or its DLQ)."""
    body = (await api.get(f"/api/v1/pipelines/{name}")).json()
    return int(body.get("rows_written", 0)) + int(body.get("dlq_rows", 0)) >= count


async def _pending(api: httpx.AsyncClient, name: str) -> bool:
    return bool((await api.get(f"/api/v1/pipelines/{name}/schema/pending")).json()["pending"])


async def shoot(base: str, token: str, out: Path, chromium: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        page = await browser.new_page(viewport={"width": 1360, "height": 900})
        await page.goto(base + "/")
        await page.get_by_test_id("token-input").fill(token)
        await page.get_by_test_id("signin-button").click()

        async def photo(name: str, path: str, ready: Callable[[Page], Awaitable[None]]) -> None:
            await page.goto(base + path)
            await ready(page)
            await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"screenshots: {out / name}.png")

        await photo("pipelines", "/", lambda p: expect(p.get_by_test_id("pipeline-row")).to_have_count(3,
                                                                                                        timeout=WAIT))
        await photo("pipeline", "/pipelines/orders", lambda p: expect(
            p.get_by_test_id("timeline-table").locator("tbody tr").first).to_be_visible(timeout=WAIT))
        await photo("checkpoint-reset", "/pipelines/clicks", _dry_run)
        await photo("dlq", "/pipelines/orders/dlq", lambda p: expect(p.get_by_test_id("dlq-row").first).to_be_visible(
            timeout=WAIT))
        await photo("schema", "/pipelines/customers/schema", lambda p: expect(
            p.get_by_test_id("pending-row").first).to_be_visible(timeout=WAIT))
        await photo("usage", "/usage", lambda p: expect(
            p.get_by_test_id("usage-projects").locator("tbody tr")).to_have_count(2, timeout=WAIT))
        await photo("audit", "/audit", lambda p: expect(p.get_by_test_id("audit-row").first).to_be_visible(
            timeout=WAIT))
        await browser.close()


async def _dry_run(page: Page) -> None:
    """The paused pipeline's checkpoint panel after a dry run back to the start of its file."""
    await expect(page.get_by_test_id("reset-dry-run")).to_be_enabled(timeout=WAIT)
    await page.get_by_test_id("reset-value").fill("0")
    await page.get_by_test_id("reset-dry-run").click()
    await expect(page.get_by_test_id("reset-confirm")).to_be_visible(timeout=WAIT)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "ui")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="conduitd-demo-") as tmp:
        root = Path(tmp)
        token = new_token()
        tokens_file = root / "tokens.yml"
        tokens_file.write_text(yaml.safe_dump({"tokens": [
            {"name": "demo-admin", "sha256": hash_token(token), "role": "admin", "projects": ["*"]}]}))
        config_file = root / "conduitd.yml"
        config_file.write_text(yaml.safe_dump(demo_config(root, tokens_file)))
        runtime = Runtime(load_config(config_file), ())
        daemon = asyncio.create_task(runtime.run())
        try:
            await until(_started(runtime, daemon), "the API to start")
            assert runtime.api is not None
            base = f"http://127.0.0.1:{runtime.api.port}"
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                         timeout=60) as api:
                await feed(root, api)
            await shoot(base, token, args.out, args.chromium)
        finally:
            runtime.stop.set()
            await daemon


def _started(runtime: Runtime, daemon: asyncio.Task[Any]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        if daemon.done():
            daemon.result()  # the daemon's own error, if it stopped
            raise SystemExit("screenshots: the demo daemon stopped")
        return runtime.api is not None and runtime.api._task is not None

    return check


if __name__ == "__main__":
    asyncio.run(main(arguments()))
