"""The web UI in headless Chromium (Debian's package, driven by Playwright's async API in the
test's own event loop, beside the in-process daemon): the pipelines list shows the real
pipelines of a running daemon, pausing from the UI stops commits and resuming reads on, a DLQ
replay from the UI moves the rows into the table exactly once, and a viewer sees no operate
button (an operator sees no admin button)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import require_or_skip
from tests.helpers.api import Daemon, rows, serving, until
from tests.integration.test_api_operate import append, config, written

CHROMIUM = os.environ.get("CONDUITD_CHROMIUM", "/usr/bin/chromium")
WAIT = 30_000  # ms: the longest any expectation waits for the page to show a state


class UI:
    """Headless Chromium; every tab it opens records uncaught script errors, and the test fails
    on any at its end."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []

    async def open(self, daemon: Daemon, who: str, path: str = "/") -> Page:
        """A new tab that opened `path` and signed in with the token of `who`."""
        page = await (await self.browser.new_context()).new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        await page.goto(daemon.base + path)
        await page.get_by_test_id("token-input").fill(daemon.tokens[who])
        await page.get_by_test_id("signin-button").click()
        await expect(page.get_by_test_id("whoami")).to_contain_text(who, timeout=WAIT)
        return page


@pytest.fixture
async def ui() -> AsyncIterator[UI]:
    if not shutil.which(CHROMIUM):
        require_or_skip(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
                        "(apt-get install -y chromium; scripts/test.sh installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        found = UI(browser)
        try:
            yield found
        finally:
            await browser.close()
        assert found.errors == [], found.errors


def row(page: Page, pipeline: str) -> Any:
    return page.locator(f'tr[data-testid="pipeline-row"][data-pipeline="{pipeline}"]')


async def test_the_list_shows_the_real_pipelines_of_the_running_daemon(tmp_path: Path, ui: UI) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 40)
        await until(lambda: _written(daemon, {"p_a": 40, "p_c": 40}), "the first rows")
        page = await ui.open(daemon, "viewer-a")

        listed = (await daemon.get("viewer-a", "/pipelines")).json()["pipelines"]
        assert [p["name"] for p in listed] == ["p_a", "p_c"]
        rows_shown = page.get_by_test_id("pipeline-row")
        await expect(rows_shown).to_have_count(2, timeout=WAIT)
        assert await rows_shown.evaluate_all("rs => rs.map(r => r.dataset.pipeline)") == ["p_a", "p_c"]
        for p in listed:
            shown = row(page, p["name"])
            await expect(shown.get_by_test_id("state")).to_have_text(p["state"])
            await expect(shown.get_by_test_id("project")).to_have_text("a")
            await expect(shown.get_by_test_id("written")).to_have_text("40", timeout=WAIT)
            await expect(shown.get_by_test_id("route")).to_contain_text("src_a (file) → db (sqlite)")
            await expect(shown.locator("svg.sparkline")).to_have_count(1)
        await expect(row(page, "p_b")).to_have_count(0)  # project b's pipeline is not shown to a token of a

        append(tmp_path / "a" / "1.jsonl", 40, 10)  # the page follows the daemon
        await expect(row(page, "p_c").get_by_test_id("written")).to_have_text("50", timeout=WAIT)

        await row(page, "p_a").get_by_role("link", name="p_a").click()
        await expect(page.get_by_test_id("pipeline-state")).to_have_text("running", timeout=WAIT)
        await expect(page.get_by_test_id("timeline-table").locator("tbody tr").first).to_contain_text("committed")
        await expect(page.get_by_test_id("partitions-table").locator("tbody tr")).to_have_count(1)
        await expect(page.get_by_test_id("throughput-chart").locator("svg polyline")).to_have_count(1)


async def test_pausing_from_the_ui_stops_commits_and_resuming_reads_on(tmp_path: Path, ui: UI) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 100)
        await until(lambda: _written(daemon, {"p_a": 100, "p_c": 100}), "the first rows")
        page = await ui.open(daemon, "operator-a")

        await row(page, "p_a").get_by_test_id("pause-p_a").click()
        await expect(row(page, "p_a").get_by_test_id("state")).to_have_text("paused", timeout=WAIT)
        assert (await daemon.pipeline("viewer-a", "p_a"))["state"] == "paused"

        # p_c reads the same file: once it has committed the new rows, p_a could have read them too.
        append(tmp_path / "a" / "1.jsonl", 100, 50)
        await until(lambda: _written(daemon, {"p_c": 150}), "p_c to commit the new rows")
        await expect(row(page, "p_c").get_by_test_id("written")).to_have_text("150", timeout=WAIT)
        assert rows(db, "SELECT count(*) FROM p_a") == [(100,)]
        await expect(row(page, "p_a").get_by_test_id("written")).to_have_text("100")

        await row(page, "p_a").get_by_test_id("resume-p_a").click()
        await expect(row(page, "p_a").get_by_test_id("written")).to_have_text("150", timeout=WAIT)
        await expect(row(page, "p_a").get_by_test_id("state")).to_have_text("running")
    assert rows(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM p_a") == [(150, 150, 0, 149)]
    audit = rows(db, "SELECT actor, action FROM conduitd_audit ORDER BY id")
    assert audit == [("operator-a", "pause"), ("operator-a", "resume")]


async def test_a_dlq_replay_from_the_ui_moves_the_rows(tmp_path: Path, ui: UI) -> None:
    """Rows with a column the table lacks wait in the DLQ under `schema_evolution: manual` (rule
    `schema`). An admin applies the pending change on the schema page; an operator then replays
    the rows from the DLQ page: they move into the table and out of the DLQ, once. The audit and
    usage pages show what happened."""
    db = tmp_path / "t.db"
    manual = {"schema_evolution": {"mode": "manual", "migrations_dir": str(tmp_path / "migrations")}}
    async with serving(tmp_path, config(tmp_path, **manual)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 10)
        await until(lambda: _written(daemon, {"p_a": 10}), "the first rows")
        append(tmp_path / "a" / "1.jsonl", 10, 5, extra="new column")
        await until(lambda: _dlq_rows(daemon, "p_a", 5), "the rows with a new column to go to the DLQ")
        assert rows(db, "SELECT count(*) FROM p_a") == [(10,)]

        operator = await ui.open(daemon, "operator-a", "/pipelines/p_a/dlq")
        shown = operator.get_by_test_id("dlq-row")
        await expect(shown).to_have_count(5, timeout=WAIT)
        await expect(shown.first).to_contain_text("schema")
        ids = await shown.evaluate_all("rs => rs.map(r => Number(r.dataset.id))")

        await operator.get_by_test_id("dlq-select-all").check()  # before the migration: the rows stay
        await operator.get_by_test_id("dlq-replay").click()
        await expect(operator.get_by_test_id("notice")).to_contain_text("still rejected: 5", timeout=WAIT)
        await expect(shown).to_have_count(5)

        admin = await ui.open(daemon, "admin-a", "/pipelines/p_a/schema")
        pending = admin.get_by_test_id("pending-row")
        await expect(pending.first).to_contain_text("extra", timeout=WAIT)
        change = await pending.first.get_attribute("data-id")
        await admin.get_by_test_id(f"apply-{change}").click()
        await expect(admin.get_by_test_id("pending-empty")).to_be_visible(timeout=WAIT)
        assert "extra" in [c[1] for c in rows(db, "PRAGMA table_info(p_a)")]

        await operator.get_by_test_id("dlq-select-all").check()
        await operator.get_by_test_id("dlq-replay").click()
        await expect(operator.get_by_test_id("notice")).to_contain_text("moved: 5", timeout=WAIT)
        await expect(operator.get_by_test_id("dlq-empty")).to_be_visible(timeout=WAIT)
        await expect(shown).to_have_count(0)
        assert (await daemon.get("viewer-a", "/pipelines/p_a/dlq")).json()["entries"] == []
        again = await daemon.post("operator-a", "/pipelines/p_a/dlq/replay", json={"ids": ids})
        assert again.status_code == 404, again.text  # replayed entries are gone: nothing moves twice

        await admin.goto(f"{daemon.base}/audit")
        actions = admin.get_by_test_id("audit-row")
        await expect(actions.first).to_be_visible(timeout=WAIT)
        texts = await actions.all_inner_texts()
        assert sum("dlq_replay" in t for t in texts) == 2, texts
        assert any("operator-a" in t for t in texts) and any("admin-a" in t for t in texts), texts
        await admin.goto(f"{daemon.base}/usage")
        await expect(admin.get_by_test_id("usage-projects").locator("tbody tr").first).to_contain_text("a",
                                                                                                       timeout=WAIT)
    assert rows(db, "SELECT count(*), count(DISTINCT id), count(extra) FROM p_a") == [(15, 15, 5)]
    assert rows(db, "SELECT id, extra FROM p_a WHERE extra IS NOT NULL ORDER BY id") == [
        (i, "new column") for i in range(10, 15)]


async def test_a_viewer_sees_no_operate_button_and_an_operator_no_admin_button(tmp_path: Path,
                                                                               ui: UI) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 10)
        await until(lambda: _written(daemon, {"p_a": 10, "p_c": 10}), "the first rows")

        operator = await ui.open(daemon, "operator-a")  # the contrast: an operator has them
        await expect(row(operator, "p_a").get_by_test_id("pause-p_a")).to_be_visible(timeout=WAIT)
        viewer = await ui.open(daemon, "viewer-a")
        await expect(viewer.get_by_test_id("pipeline-row")).to_have_count(2, timeout=WAIT)
        await expect(row(viewer, "p_a").get_by_test_id("state")).to_have_text("running")
        await expect(viewer.locator("main button")).to_have_count(0)
        await expect(viewer.get_by_role("columnheader", name="Actions")).to_have_count(0)

        await viewer.goto(f"{daemon.base}/pipelines/p_a")
        await expect(viewer.get_by_test_id("pipeline-state")).to_have_text("running", timeout=WAIT)
        await expect(viewer.locator("main button")).to_have_count(0)
        await expect(viewer.get_by_test_id("reset-form")).to_be_hidden()
        await viewer.goto(f"{daemon.base}/pipelines/p_a/dlq")
        await expect(viewer.get_by_test_id("dlq-empty")).to_be_visible(timeout=WAIT)
        await expect(viewer.get_by_test_id("dlq-actions").locator("button")).to_have_count(0)
        await expect(viewer.locator("main input[type=checkbox]")).to_have_count(0)

        await operator.goto(f"{daemon.base}/pipelines/p_a/dlq")
        await expect(operator.get_by_test_id("dlq-replay")).to_be_visible(timeout=WAIT)
        await expect(operator.get_by_test_id("dlq-discard")).to_have_count(0)
        await operator.goto(f"{daemon.base}/pipelines/p_a")
        await expect(operator.get_by_test_id("pause-p_a")).to_be_visible(timeout=WAIT)
        await expect(operator.get_by_test_id("reset-form")).to_be_hidden()

        admin = await ui.open(daemon, "admin-a", "/pipelines/p_a/dlq")
        await expect(admin.get_by_test_id("dlq-discard")).to_be_visible(timeout=WAIT)


async def test_a_checkpoint_reset_from_the_ui_is_dry_run_first_then_confirmed(tmp_path: Path, ui: UI) -> None:
    db = tmp_path / "t.db"
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 20)
        await until(lambda: _written(daemon, {"p_a": 20}), "the first rows")
        admin = await ui.open(daemon, "admin-a", "/pipelines/p_a")
        await expect(admin.get_by_test_id("reset-partition").locator("option")).to_have_count(1, timeout=WAIT)
        await expect(admin.get_by_test_id("reset-dry-run")).to_be_disabled()  # refused while it reads

        await admin.get_by_test_id("pause-p_a").click()
        await expect(admin.get_by_test_id("pipeline-state")).to_have_text("paused", timeout=WAIT)
        before = await _checkpoint(daemon)
        await admin.get_by_test_id("reset-value").fill("0")
        await admin.get_by_test_id("reset-dry-run").click()
        await expect(admin.get_by_test_id("reset-effect")).to_contain_text(f"re-read {before:,} bytes", timeout=WAIT)
        assert await _checkpoint(daemon) == before  # a dry run changes nothing

        await admin.get_by_test_id("reset-confirm").click()
        await expect(admin.get_by_test_id("notice")).to_contain_text("checkpoint of", timeout=WAIT)
        assert await _checkpoint(daemon) == 0
        await admin.get_by_test_id("resume-p_a").click()
        await until(lambda: rows(db, "SELECT count(*) FROM p_a") == [(40,)], "p_a to read the file again")
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM p_a") == [(40, 20)]
    audit = rows(db, "SELECT actor, action FROM conduitd_audit ORDER BY id")
    assert audit == [("admin-a", "pause"), ("admin-a", "checkpoint_reset"), ("admin-a", "resume")]


async def _checkpoint(daemon: Daemon) -> int:
    found = (await daemon.get("viewer-a", "/pipelines/p_a/checkpoints")).json()["checkpoints"]
    return int(found[0]["position"]["offset"])


async def test_the_usage_page_exports_csv_with_the_token(tmp_path: Path, ui: UI) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 25)
        await until(lambda: _written(daemon, {"p_a": 25, "p_c": 25}), "the rows")
        page = await ui.open(daemon, "viewer-a", "/usage")
        projects = page.get_by_test_id("usage-projects").locator("tbody tr")
        await expect(projects).to_have_count(1, timeout=WAIT)
        await expect(projects.first).to_contain_text("50")  # p_a and p_c, 25 rows each, in project a
        async with page.expect_download() as download:
            await page.get_by_test_id("usage-csv").click()
        saved = await (await download.value).path()
        text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
        lines = list(csv.DictReader(io.StringIO(text)))
        assert sorted((line["pipeline"], line["project"], int(line["rows"])) for line in lines) == [
            ("p_a", "a", 25), ("p_c", "a", 25)]


async def _written(daemon: Daemon, expected: dict[str, int]) -> bool:
    for name, count in expected.items():
        if await written(daemon, name) != count:
            return False
    return True


async def _dlq_rows(daemon: Daemon, name: str, count: int) -> bool:
    return int((await daemon.pipeline("admin-all", name)).get("dlq_rows", 0)) == count

