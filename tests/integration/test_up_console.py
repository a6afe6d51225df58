"""`tether up` serves the web console and prints a link that logs a browser in once: the
key only in the fragment, never in a query string or the log; --open hands the link to
the person's browser."""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from playwright.async_api import Browser, expect

from tests.integration.test_up import start_up_announced
from tests.support.browser import DESKTOP, browser, shoot
from tests.support.process import SCALE

__all__ = ["browser"]


async def login(url: str, key: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/console/login", json={"token": key}, headers={"Origin": url}) as r,
    ):
        return r.status


async def test_the_link_logs_in_once_and_the_key_is_never_in_a_query_or_the_log(
    home: Path, browser: Browser
) -> None:
    workspace = home / "project"
    workspace.mkdir()
    proc, log, info = start_up_announced(home, workspace)
    try:
        link = str(info["login_link"])
        parts = urlsplit(link)
        assert parts.query == ""
        assert parts.fragment.startswith("token=ttc_")
        assert info["console"] == f"{info['url']}/"
        key = parts.fragment.removeprefix("token=")

        context = await browser.new_context(locale="en-US", viewport=DESKTOP)  # type: ignore[arg-type]
        page = await context.new_page()
        await page.goto(link)
        await expect(page.locator("#whoami")).to_have_text("Signed in as local-admin (owner)")
        await expect(page.locator("#link")).to_have_text("live")
        assert "ttc_" not in page.url
        await shoot(page, "up-link-desktop")

        assert await login(str(info["url"]), key) == 401  # once only
        other = await (await browser.new_context(locale="en-US")).new_page()
        await other.goto(link)  # the same link in another browser: refused
        await expect(other.locator("#login-error")).to_have_text(
            "That token was refused: it is wrong or revoked."
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0
    assert key not in log.read_text()  # never logged


async def test_open_hands_the_link_to_the_browser(home: Path) -> None:
    workspace = home / "project"
    workspace.mkdir()
    seen = home / "opened"
    fake = home / "fake-browser"
    fake.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}.part && mv {seen}.part {seen}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    proc, _, info = start_up_announced(home, workspace, "--open", env={"BROWSER": str(fake)})
    try:
        for _ in range(int(100 * SCALE)):
            if seen.exists():
                break
            await asyncio.sleep(0.1)
        assert seen.read_text() == info["login_link"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30 * SCALE) == 0
