"""The console's other views in a real browser: runners (status, adding one with its
enrolment command and a copy button, revoking one), routines (pause and resume), who
sees which controls, and an accessibility check (axe-core) with screenshots of every
view at desktop and phone width, in English and Chinese."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import PHONE, accessibility_problems, browser, logged_in, shoot
from tests.support.people import OPERATOR, add_user
from tests.support.process import GatewayProcess, RunnerProcess, run_cli

__all__ = ["browser"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


@pytest.fixture
def engine() -> str:
    """A client's feature: SQLite is enough (the ledger's engines are tested elsewhere)."""
    return "sqlite"


async def test_an_owner_sees_runners_adds_one_with_its_command_and_revokes_it(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    owner = await add_user(gw, "olga", "owner")
    page = await logged_in(browser, gw.url, owner)
    await page.get_by_role("link", name="Runners").click()
    box = page.locator('#runners-rows tr[data-runner="box"]')
    await expect(box.locator("td.status")).to_have_text("online")
    await expect(box.locator("td").nth(5)).to_have_text(re.compile(r"^\d+$"))  # tools
    await expect(box.locator("td").nth(4)).to_have_text("app")

    await page.locator("#runner-name").fill("laptop")
    await page.locator("#runner-name").press("Enter")
    command = page.locator("#enrol-command")
    await expect(command).to_contain_text("tether runner")
    await expect(page.locator("#enrol-help")).to_contain_text("within")
    await page.locator("#enrol-copy").click()
    await expect(page.locator("#enrol-copied")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == await command.text_content()
    laptop = page.locator('#runners-rows tr[data-runner="laptop"]')
    await expect(laptop.locator("td.status")).to_have_text("not enrolled yet")
    await shoot(page, "runners-desktop")
    assert await accessibility_problems(page) == []

    await laptop.get_by_role("button", name="Revoke").click()
    await expect(laptop).to_contain_text("Revoke laptop?")
    await laptop.get_by_role("button", name="Yes, revoke").click()
    await expect(laptop.locator("td.status")).to_have_text("revoked")
    listed = json.loads(run_cli(gw.home, "--json", "runners", "list").stdout)["runners"]
    assert {r["name"]: r["status"] for r in listed}["laptop"] == "revoked"
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await shoot(page, "runners-phone")
    assert page.problems == []  # type: ignore[attr-defined]


async def test_a_member_sees_runners_but_no_controls_over_them(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    member = await add_user(gw, "alice")
    page = await logged_in(browser, gw.url, member)
    await page.goto(f"{gw.url}/#/runners")
    await expect(page.locator('#runners-rows tr[data-runner="box"] td.status')).to_have_text(
        "online"
    )
    await expect(page.locator("#runner-add")).to_be_hidden()
    assert await page.get_by_role("button", name="Revoke").count() == 0


async def test_routines_are_listed_paused_and_resumed(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    owner = await add_user(gw, "olga", "owner")
    started = run_cli(home, "--json", "runs", "start", "/status")
    assert started.returncode == 0, started.stderr
    session = json.loads(started.stdout)["run"]["session_id"]
    added = run_cli(
        home, "routines", "add", "standup", "--cron", "0 9 * * 1-5", "--tz", "Asia/Shanghai",
        "--session", session, "--input", "what changed since yesterday?",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    page = await logged_in(browser, gw.url, owner)
    await page.get_by_role("link", name="Routines").click()
    row = page.locator('#routines-rows tr[data-routine="standup"]')
    await expect(row).to_contain_text("0 9 * * 1-5 (Asia/Shanghai)")
    await expect(row).to_contain_text("what changed since yesterday?")
    await expect(row.locator("td").nth(4)).to_have_text("active")
    await shoot(page, "routines-desktop")
    assert await accessibility_problems(page) == []
    await row.get_by_role("button", name="Pause").click()
    await expect(row.locator("td").nth(4)).to_have_text("paused")
    listed = json.loads(run_cli(home, "--json", "routines", "list").stdout)["routines"]
    assert [r["state"] for r in listed] == ["paused"]
    await row.get_by_role("button", name="Resume").click()
    await expect(row.locator("td").nth(4)).to_have_text("active")
    await row.get_by_role("link").click()  # its session, one click away
    await expect(page.locator("#chat-title")).to_have_text(session)
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await page.goto(f"{gw.url}/#/routines")
    await shoot(page, "routines-phone")


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
async def test_every_view_passes_the_accessibility_check_at_both_widths(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, locale: str
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    owner = await add_user(gw, "olga", "owner")
    lang = "zh" if locale.startswith("zh") else "en"
    for phone in (False, True):
        width = "phone" if phone else "desktop"
        page = await logged_in(browser, gw.url, owner, locale=locale, phone=phone)
        problems: dict[str, list[str]] = {}
        # a run waiting for a person, so the chat view has a card with its buttons
        await page.locator("#new-session").click()
        await page.locator("#chat-input").fill("!echo needs-a-yes")
        await page.locator("#chat-input").press("Enter")
        await expect(page.locator(".request.approval button").first).to_be_enabled()
        problems["chat"] = await accessibility_problems(page)
        await shoot(page, f"chat-{lang}-{width}")
        await page.locator(".request.approval button").first.click()
        await expect(page.locator(".run").first).to_have_attribute("data-state", "succeeded")
        for view in ("sessions", "runners", "routines"):
            await page.goto(f"{gw.url}/#/{view}")
            await expect(page.locator(f"#{view}")).to_be_visible()
            await page.wait_for_timeout(200)  # its list has come
            problems[view] = await accessibility_problems(page)
            await shoot(page, f"{view}-{lang}-{width}")
        await page.locator("#logout").click()
        await expect(page.locator("#login")).to_be_visible()
        problems["login"] = await accessibility_problems(page)
        await shoot(page, f"login-{lang}-{width}")
        assert {k: v for k, v in problems.items() if v} == {}
        assert page.problems == []  # type: ignore[attr-defined]
        await page.context.close()
