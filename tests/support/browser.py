"""A real browser for the web console's tests: Debian's headless Chromium driven by
Playwright through ``executable_path`` (Playwright downloads no browser), and where
screenshots go (``artifacts/console/``, or ``$TETHER_ARTIFACTS/console/``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("TETHER_ARTIFACTS") or ROOT / "artifacts") / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed (.ci/run installs the Debian package)")
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


def watch_violations(page: Page) -> list[str]:
    """The page's console errors and CSP violations, collected as they happen."""
    seen: list[str] = []

    def on_message(message: ConsoleMessage) -> None:
        # (a 401 is the console asking whether it is logged in, and being told no)
        if message.type == "error" and "401 (Unauthorized)" not in message.text:
            seen.append(message.text)

    page.on("console", on_message)
    page.on("pageerror", lambda exc: seen.append(f"uncaught: {exc}"))
    return seen


async def logged_in(
    browser: Browser, url: str, token: str, *, locale: str = "en-US", phone: bool = False
) -> Page:
    """A fresh browser context logged in with ``token`` through the one-time-link path,
    live on the WebSocket; ``page.problems`` collects its console errors."""
    context = await browser.new_context(
        locale=locale,
        viewport=PHONE if phone else DESKTOP,  # type: ignore[arg-type]
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = await context.new_page()
    page.problems = watch_violations(page)  # type: ignore[attr-defined]
    await page.goto(f"{url}/#token={token}")
    await expect(page.locator("#link")).to_have_text(
        "已连接" if locale.startswith("zh") else "live"
    )
    return page


async def shoot(page: Page, name: str) -> Path:
    """Keep a full-page screenshot of what the page shows now."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


AXE = ROOT / "tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


async def accessibility_problems(page: Page) -> list[str]:
    """What axe-core (WCAG 2.1 A and AA rules) finds wrong with the page as it is now,
    one line per rule and element."""
    if not AXE.exists():
        pytest.fail("axe-core is not installed (make testjs installs it)")
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(AXE.read_text())  # (through the debugger: the CSP is untouched)
    result = await page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
            });
            return r.violations.map((v) => ({
                id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [f"{v['id']}: {v['help']} at {node}" for v in result for node in v["nodes"]]
