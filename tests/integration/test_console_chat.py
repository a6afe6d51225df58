"""The console's session view in a real browser, through a real gateway, runner and
operator agent: a run with an approval driven entirely in the page, a request decided
elsewhere, a card nobody may forge, a reload and a gateway restart mid-run, and agent
output that tries to be HTML."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import runs as r
from tests.support.browser import PHONE, browser, logged_in, shoot
from tests.support.people import MEMBERS_MAY_SCRIPT, OPERATOR, add_user, as_user
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tests.support.webhook import SECRET, SECRET_ENV, WebhookStandIn, config_toml, event, hook, post
from tether.gateway.runs_api import PAGE_BYTES

__all__ = ["browser", "hook"]

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


@pytest.fixture
def engine() -> str:
    """A client's feature: SQLite is enough (the ledger's engines are tested elsewhere)."""
    return "sqlite"


async def new_session(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, **env: str
) -> tuple[GatewayProcess, Page]:
    """A gateway, its runner, and alice's page on a new session of her own."""
    gw = make_gateway(**OPERATOR, **env)
    make_runner(gw)
    page = await logged_in(browser, gw.url, await add_user(gw, "alice"))
    await page.locator("#new-session").click()
    await expect(page.locator("#chat")).to_be_visible()
    return gw, page


async def say(page: Page, text: str) -> None:
    await page.locator("#chat-input").fill(text)
    await page.locator("#chat-input").press("Enter")
    await expect(page.locator("#chat-input")).to_have_value("")


async def test_a_run_with_an_approval_is_driven_entirely_in_the_browser(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    _, page = await new_session(make_gateway, make_runner, browser)
    await expect(page.locator("#chat-meta")).to_contain_text("operator on box/app")
    await say(page, "!echo hi > out.txt && echo written")

    card = page.locator(".request.approval")
    await expect(card).to_be_visible()
    await expect(card.locator(".plan code")).to_have_text("echo hi > out.txt; echo written")
    assert not (home / "ws-box" / "out.txt").exists()  # nothing ran before the decision
    await shoot(page, "chat-approval-desktop")
    await card.get_by_role("button", name="Allow once").click()

    call = page.locator(".call").first
    await expect(call).to_have_attribute("data-state", "succeeded")
    await expect(call.locator(".tool")).to_have_text("shell")
    await expect(call.locator(".args")).to_contain_text("echo hi > out.txt")
    await expect(call.locator(".decision")).to_have_text("allowed by you")
    await expect(call.locator(".output pre")).to_contain_text("written")
    await expect(call.locator(".took")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    await expect(card.locator(".outcome")).to_contain_text("allowed once by you at")
    await expect(card.locator("button")).to_have_count(0)  # decided: no buttons left
    run = page.locator(".run").first
    await expect(run).to_have_attribute("data-state", "succeeded")
    await expect(run.locator(".msg.agent .text")).to_contain_text("written")
    assert (home / "ws-box" / "out.txt").read_text() == "hi\n"
    await shoot(page, "chat-done-desktop")
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await shoot(page, "chat-done-phone")

    await say(page, "/status")  # a command's answer is shown where it was asked
    await expect(page.locator("#chat-notes li").last).to_contain_text("operator")
    assert page.problems == []  # type: ignore[attr-defined]


async def test_a_request_decided_elsewhere_updates_the_open_page_at_once(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    _, page = await new_session(make_gateway, make_runner, browser)
    await say(page, "!echo decided-elsewhere")
    card = page.locator(".request.approval")
    await expect(card.get_by_role("button", name="Deny")).to_be_enabled()
    listed = json.loads(run_cli(home, "--json", "approvals", "list").stdout)["requests"]
    assert len(listed) == 1
    denied = run_cli(home, "approvals", "deny", listed[0]["handle"])  # the owner, elsewhere
    assert denied.returncode == 0, denied.stderr
    await expect(card.locator(".outcome")).to_contain_text("denied by")
    await expect(card.locator("button")).to_have_count(0)
    call = page.locator(".call").first
    await expect(call).to_have_attribute("data-state", "failed")
    await expect(call.locator(".error")).to_have_text("it was denied, so nothing ran")
    await expect(page.locator(".run").first).to_have_attribute(
        "data-state", re.compile("succeeded|failed")
    )


async def test_in_a_group_chat_only_the_runs_approver_may_decide_and_a_forged_resolve_is_refused(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    browser: Browser,
    home: Path,
    hook: WebhookStandIn,
) -> None:
    config_toml(home / "config", hook.url, agent="operator")
    gw = make_gateway(**{SECRET_ENV: SECRET})
    make_runner(gw)
    alice = await add_user(gw, "alice")
    await add_user(gw, "bob")
    for name in ("alice", "bob"):
        linked = run_cli(
            home, "users", "link", name, "--channel", "webhook.ops", "--id", f"u-{name}"
        )
        assert linked.returncode == 0, linked.stderr
    # alice starts the group's session; then bob asks for a command in it: his run, his call
    await post(
        gw.url, event("e1", "/status", sender="u-alice", chat="g1", group=True, addressed=True)
    )
    await hook.wait_for(lambda d: d.get("text", "").startswith("Session "))
    await post(
        gw.url,
        event("e2", "!echo bobs-work", sender="u-bob", chat="g1", group=True, addressed=True),
    )
    await hook.wait_for(lambda d: d["kind"] == "request")
    sessions = json.loads(run_cli(home, "--json", "sessions", "list").stdout)["sessions"]
    assert len(sessions) == 1

    page = await logged_in(browser, gw.url, alice)
    await page.goto(f"{gw.url}/#/s/{sessions[0]['id']}")
    card = page.locator(".request.approval")
    await expect(card).to_be_visible()
    for name in ("Allow once", "Allow for session", "Deny"):
        await expect(card.get_by_role("button", name=name)).to_be_disabled()
    await expect(card.locator(".why")).to_contain_text("may decide this")
    await shoot(page, "chat-card-inactive-desktop")

    # a page made to send it anyway: the gateway refuses, and nothing runs
    await card.get_by_role("button", name="Allow once").evaluate("b => { b.disabled = false; }")
    await card.get_by_role("button", name="Allow once").click()
    await expect(card.locator(".outcome")).to_contain_text("Not decided")
    await asyncio.sleep(0.5)
    listed = json.loads(run_cli(home, "--json", "approvals", "list").stdout)["requests"]
    assert [r["state"] for r in listed] == ["open"]
    assert page.problems == []  # type: ignore[attr-defined]


async def test_a_reload_and_a_gateway_restart_mid_run_resume_with_nothing_twice(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    gw = make_gateway(**OPERATOR, TETHER_RUNS__DEFAULT_MODE="auto")
    make_runner(gw, env={"TETHER_RUNNER__RECONNECT_MAX_DELAY": "0.5"})
    alice = await add_user(gw, "alice")
    page = await logged_in(browser, gw.url, alice)
    await page.locator("#new-session").click()
    await say(page, "!for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.4; done")
    output = page.locator(".call .output pre").first
    await expect(output).to_contain_text("tick-2")
    await page.reload()  # mid-run: the page builds it again from the ledger, then live
    await expect(page.locator("#link")).to_have_text("live")
    await expect(output).to_contain_text("tick-6", timeout=15_000)
    await expect(page.locator(".run").first).to_have_attribute("data-state", "succeeded")
    text = await output.text_content() or ""
    assert [line for line in text.splitlines() if line] == [f"tick-{i}" for i in range(1, 7)]

    await say(page, "!for i in 1 2 3 4 5 6 7 8; do echo tock-$i; sleep 0.5; done")
    second = page.locator(".run").nth(1)
    await expect(second.locator(".output pre")).to_contain_text("tock-1")
    gw.args = ("--listen", f"127.0.0.1:{gw.url.rsplit(':', 1)[1]}")  # where the runner dials
    gw.terminate()
    await expect(page.locator("#link")).to_have_text("offline — reconnecting…")
    gw.start()
    await expect(page.locator("#link")).to_have_text("live", timeout=20_000)
    await expect(second).to_have_attribute(
        "data-state", re.compile("succeeded|failed"), timeout=30_000
    )
    await expect(page.locator(".run")).to_have_count(2)
    await page.reload()  # what the ledger holds is what was shown live, once each
    after = page.locator(".run").nth(1)
    await expect(after).to_have_attribute("data-state", re.compile("succeeded|failed"))
    assert await after.locator(".items > li").count() == await second.locator(".items > li").count()
    lines = (await after.locator(".output pre").first.text_content() or "").splitlines()
    assert len(lines) == len(set(lines))


async def test_a_session_larger_than_one_answer_opens_whole(
    make_gateway: MakeGateway, browser: Browser, home: Path
) -> None:
    """A session whose events outweigh ``session.history``'s budget: the page reads on
    where the answer stopped (in pages, then the subscription from there), so every run
    shows whole, once."""
    gw = make_gateway(**MEMBERS_MAY_SCRIPT)
    alice = await add_user(gw, "alice")
    size = 16 * 1024
    async with await as_user(gw, alice) as c:
        big = await r.start(c, f"events {PAGE_BYTES // size + 8} {size}\nsay big-done")
        sid = big.run.session_id
        after = await r.start(c, "say second-done", session_id=sid, steer=False)
        for run_id in (big.run.id, after.run.id):
            await r.wait_state(c, run_id)
    page = await logged_in(browser, gw.url, alice)
    await page.goto(f"{gw.url}/#/s/{sid}")
    runs = page.locator(".run")
    await expect(runs).to_have_count(2)
    for i, text in enumerate(["big-done", "second-done"]):
        await expect(runs.nth(i)).to_have_attribute("data-state", "succeeded")
        await expect(runs.nth(i).locator(".msg.agent[data-final] .text")).to_have_text(text)
        assert await runs.nth(i).locator(".msg.agent").count() == 1
    assert page.problems == []  # type: ignore[attr-defined]


async def test_agent_output_that_tries_to_be_html_is_shown_as_text(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    _, page = await new_session(
        make_gateway, make_runner, browser, TETHER_RUNS__DEFAULT_MODE="auto"
    )
    await page.evaluate("window.pwned = 0")
    hostile = (
        '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
        "[x](javascript:window.pwned=3) **bold**"
    )
    await say(page, f"!printf '%s\\n' '{hostile}'")
    run = page.locator(".run").first
    await expect(run).to_have_attribute("data-state", "succeeded")
    await expect(run.locator(".call .output pre")).to_contain_text(
        "<script>window.pwned = 1</script>"
    )
    reply = run.locator(".msg.agent .text")
    await expect(reply).to_have_class(re.compile(r"\bmd\b"))  # rendered by the gateway
    await expect(reply).to_contain_text("<img src=x")
    await expect(reply.locator("strong")).to_have_text("bold")  # Markdown still works
    assert await page.locator("#timeline script, #timeline img, #timeline [onerror]").count() == 0
    hrefs = await reply.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert not [h for h in hrefs if h.startswith("javascript:")]
    assert await page.evaluate("window.pwned") == 0

    await page.reload()  # from the history now: its Markdown asked for while it is built
    reply = page.locator(".run").first.locator(".msg.agent .text")
    await expect(reply).to_have_class(re.compile(r"\bmd\b"))
    await expect(reply.locator("strong")).to_have_text("bold")
    await expect(reply).to_contain_text("<img src=x")
    assert await page.locator("#timeline script, #timeline img, #timeline [onerror]").count() == 0
    assert await page.evaluate("window.pwned === undefined")  # nothing set it on this load
    assert page.problems == []  # type: ignore[attr-defined]


async def test_work_started_elsewhere_appears_and_streams_in_the_open_page(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    gw = make_gateway(**OPERATOR, TETHER_RUNS__DEFAULT_MODE="auto")
    make_runner(gw)
    alice = await add_user(gw, "alice")
    page = await logged_in(browser, gw.url, alice)
    await expect(page.locator("#sessions-empty")).to_be_visible()
    as_alice = {"TETHER_TOKEN": alice}
    started = run_cli(
        home, "--json", "runs", "start", "!echo from-the-cli", "--url", gw.url, env=as_alice
    )
    assert started.returncode == 0, started.stderr
    session = json.loads(started.stdout)["run"]["session_id"]
    row = page.locator(f'#sessions-rows tr[data-session="{session}"]')
    await expect(row).to_be_visible()  # the list keeps itself up to date
    await row.get_by_role("link").click()
    await expect(page.locator(".run .call .output pre").first).to_contain_text("from-the-cli")
    again = run_cli(
        home, "runs", "start", "--session", session, "!echo second-from-cli", "--url", gw.url,
        env=as_alice,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    second = page.locator(".run").nth(1)
    await expect(second.locator(".call .output pre")).to_contain_text("second-from-cli")
    await expect(second).to_have_attribute("data-state", "succeeded")


async def test_a_command_cannot_disguise_itself_on_its_card(
    make_gateway: MakeGateway, make_runner: MakeRunner, browser: Browser, home: Path
) -> None:
    # a right-to-left override would show "echo fdp.exe" as "echo exe.pdf"; escapes and
    # carriage returns in output would overwrite what was shown before them
    _, page = await new_session(make_gateway, make_runner, browser)
    await say(page, "!printf 'bad\\033[2K\\rgood\\n'; echo \u202efdp.exe")
    card = page.locator(".request.approval")
    await expect(card.locator(".plan code")).to_contain_text("echo ⟨U+202E⟩fdp.exe")
    await expect(page.locator(".call .args")).to_contain_text("⟨U+202E⟩")
    await card.get_by_role("button", name="Allow once").click()
    output = page.locator(".call .output pre")
    await expect(output).to_have_text("bad\ngood\n⟨U+202E⟩fdp.exe\n")  # the escape dropped
