"""The web console's pages through a real gateway: served from the package under a strict
Content-Security-Policy, and in a real browser (Debian's headless Chromium) the one-time
link logs in, the fragment leaves the address bar, the WebSocket goes live on the cookie,
a reload keeps the session, a wrong token is refused and logging out ends it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import DESKTOP, PHONE, browser, shoot, watch_violations
from tests.support.people import MEMBERS_MAY_SCRIPT, add_user
from tests.support.process import GatewayProcess, run_cli

__all__ = ["browser"]

STRICT = {
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
}


async def test_the_console_is_served_from_the_package_under_a_strict_policy(
    gateway: GatewayProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/") as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            page = await r.text()
            policy = {part.strip() for part in r.headers["Content-Security-Policy"].split(";")}
            assert policy >= STRICT
            assert not any("unsafe" in part or "*" in part for part in policy)
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            etag = r.headers["ETag"]
        assert '<script type="module" src="/console/assets/console.js"></script>' in page
        async with http.get(f"{gateway.url}/", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        async with http.get(
            f"{gateway.url}/console/assets/console.js", headers={"Accept-Encoding": "gzip"}
        ) as r:
            assert r.status == 200
            assert r.content_type == "text/javascript"
            assert r.headers["Content-Encoding"] == "gzip"
            assert "Content-Security-Policy" in r.headers
            assert "import { Link" in await r.text()


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/nope.js",
        "/console/assets/index.html",  # the page itself only at /
        "/console/assets/..%2fconsole_http.py",
        "/console/assets/%2e%2e%2f%2e%2e%2fconfig.py",
        "/console/assets/../console_http.py",
        "/console/assets/console.js%00.html",
    ],
)
async def test_an_asset_is_one_of_a_fixed_set_never_a_path(
    gateway: GatewayProcess, path: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.url}{path}") as r,
    ):
        assert r.status == 404
        assert "import " not in await r.text()


async def open_console(
    browser: Browser, url: str, *, locale: str = "en-US", phone: bool = False
) -> Page:
    size = PHONE if phone else DESKTOP
    context = await browser.new_context(locale=locale, viewport=size)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(url)
    return page


async def test_a_one_time_link_logs_in_and_the_session_goes_live_on_the_cookie(
    gateway: GatewayProcess, browser: Browser
) -> None:
    token = await add_user(gateway, "alice")
    context = await browser.new_context(locale="en-US", viewport=DESKTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    problems = watch_violations(page)
    await page.goto(f"{gateway.url}/#token={token}")
    await expect(page.locator("#whoami")).to_have_text("Signed in as alice (member)")
    await expect(page.locator("#link")).to_have_text("live")  # the WebSocket took the cookie
    assert "token" not in page.url  # out of the address bar, and the entry replaced
    cookies = await context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("tether_console", True, "Strict")
    ]
    assert await page.evaluate("document.cookie") == ""  # no script can read it
    await shoot(page, "signed-in-desktop")
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await shoot(page, "signed-in-phone")

    await page.reload()  # the cookie keeps the session; the token is not needed again
    await expect(page.locator("#whoami")).to_have_text("Signed in as alice (member)")
    await expect(page.locator("#link")).to_have_text("live")

    await page.locator("#logout").click()
    await expect(page.locator("#login")).to_be_visible()
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()  # logged out stays logged out
    assert problems == []  # nothing broke the page's own policy


async def test_a_wrong_token_is_refused_in_words_and_nothing_is_held(
    gateway: GatewayProcess, browser: Browser
) -> None:
    await add_user(gateway, "alice")
    page = await open_console(browser, gateway.url)
    await expect(page.locator("#login")).to_be_visible()
    await page.locator("#token").fill("ttu_not-a-real-token")
    await page.locator("#token").press("Enter")  # the keyboard is enough
    await expect(page.locator("#login-error")).to_have_text(
        "That token was refused: it is wrong or revoked."
    )
    assert await page.context.cookies() == []
    await expect(page.locator("#nav")).to_be_hidden()
    await shoot(page, "login-refused-desktop")


async def test_the_console_speaks_the_browsers_language_and_switches(
    gateway: GatewayProcess, browser: Browser
) -> None:
    page = await open_console(browser, gateway.url, locale="zh-CN", phone=True)
    await expect(page.locator("#login-title")).to_have_text("登录")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await shoot(page, "login-zh-phone")
    await page.locator("#lang").click()
    await expect(page.locator("#login-title")).to_have_text("Log in")
    await page.reload()  # the choice is kept
    await expect(page.locator("#login-title")).to_have_text("Log in")


async def test_each_person_sees_their_own_sessions(
    make_gateway: Callable[..., GatewayProcess], browser: Browser, home: Path
) -> None:
    gateway = make_gateway(**MEMBERS_MAY_SCRIPT)
    alice = await add_user(gateway, "alice")
    bob = await add_user(gateway, "bob")
    started = run_cli(
        home,
        "--json",
        "runs",
        "start",
        "say hi",
        "--url",
        gateway.url,
        env={"TETHER_TOKEN": alice},
    )
    assert started.returncode == 0, started.stderr
    session_id = json.loads(started.stdout)["run"]["session_id"]

    page = await open_console(browser, f"{gateway.url}/#token={alice}")
    row = page.locator(f'#sessions-rows tr[data-session="{session_id}"]')
    await expect(row).to_be_visible()
    await expect(row.locator("td").first).to_have_text(session_id)
    await expect(page.locator("#sessions-rows tr")).to_have_count(1)
    await shoot(page, "sessions-desktop")
    await page.locator("#lang").click()  # the table speaks the other language at once
    await expect(page.locator("#sessions-title")).to_have_text("会话")
    await expect(row).to_be_visible()

    other = await open_console(browser, f"{gateway.url}/#token={bob}")
    await expect(other.locator("#sessions-empty")).to_be_visible()  # not alice's
    await expect(other.locator("#sessions-rows tr")).to_have_count(0)
