"""`tether chat` in a pseudo-terminal against a real gateway, runner and operator agent:
a run with an approval answered by a key, Ctrl-C stopping a run, a gateway restart, a
webhook chat's session continued in the terminal and back, a remote login, and output
that tries to drive the terminal."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.people import OPERATOR, add_user
from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli
from tests.support.terminal import ChatTerminal
from tests.support.webhook import SECRET, SECRET_ENV, WebhookStandIn, config_toml, event, post

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]


@pytest.fixture
def engine() -> str:
    """A client's feature: SQLite is enough (the ledger's engines are tested elsewhere)."""
    return "sqlite"


@pytest.fixture
def terminals() -> Iterator[list[ChatTerminal]]:
    opened: list[ChatTerminal] = []
    try:
        yield opened
    finally:
        for t in opened:
            t.close()


def open_chat(terminals: list[ChatTerminal], home: Path, *args: str, **env: str) -> ChatTerminal:
    t = ChatTerminal(home, *args, env=env)
    terminals.append(t)
    return t


def only_session(home: Path) -> str:
    listed = json.loads(run_cli(home, "--json", "sessions", "list").stdout)["sessions"]
    assert len(listed) == 1, listed
    return str(listed[0]["id"])


def runner_online(home: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        runners = json.loads(run_cli(home, "--json", "runners", "list").stdout)["runners"]
        if runners and all(r["online"] for r in runners):
            return
        time.sleep(0.1)
    raise AssertionError("the runner did not come back")


def test_a_run_asks_is_allowed_with_a_key_and_its_output_and_reply_are_shown(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    chat = open_chat(terminals, home)
    chat.type("!echo hi > out.txt && echo written")
    shown = chat.wait_for(r"\? approval \w+: shell `echo hi > out.txt; echo written` on box/app")
    assert "[a] allow once   [s] allow for this session   [d] deny" in shown
    assert not (home / "ws-box" / "out.txt").exists()  # nothing ran before the decision
    chat.expect_screen("waiting for you")  # the status line says so too
    chat.key("a")  # the key alone
    shown = chat.wait_for("— done")
    assert "allowed once by you" in shown
    assert "✓ shell" in shown
    assert "written" in shown
    assert (home / "ws-box" / "out.txt").read_text() == "hi\n"
    # the input typed here is not echoed back as if someone else said it
    assert "› !echo" not in shown

    chat.type("!rm -rf ../ws-box")
    chat.wait_for(r"\? approval \w+: shell `rm -rf ../ws-box`")
    chat.decide("d")
    shown = chat.wait_for(r"denied by \S+")
    chat.wait_for("— (done|failed)")
    assert (home / "ws-box").is_dir()

    # the same session next time: the terminal's own conversation
    session = only_session(home)
    chat.expect_screen(session)
    assert chat.leave() == 0
    again = open_chat(terminals, home)
    again.type("/status")
    again.expect_screen(session)
    assert again.leave() == 0
    assert only_session(home) == session


def test_ctrl_c_asks_first_then_stops_the_running_run(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    chat = open_chat(terminals, home)
    chat.type("!sleep 60")
    chat.wait_for(r"\? approval")
    chat.decide("a")
    chat.wait_for("allowed once")
    chat.ctrl("c")
    chat.expect_screen("Stop the run")
    chat.key("n")  # not now: it goes on
    chat.ctrl("c")
    chat.expect_screen("Stop the run")
    chat.key("y")
    shown = chat.wait_for("— stopped")
    assert shown.count("— stopped") == 1
    runs = json.loads(run_cli(home, "--json", "runs", "list").stdout)["runs"]
    assert [r["state"] for r in runs] == ["cancelled"]
    assert chat.leave() == 0


def test_ctrl_c_as_a_signal_asks_too_before_and_after_a_line_is_sent(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    # when the terminal is not raw for a moment (output being printed), Ctrl-C arrives as
    # SIGINT: to the running prompt, or between two prompts; it must ask, not kill
    gw = make_gateway(**OPERATOR, TETHER_RUNS__DEFAULT_MODE="auto")
    make_runner(gw)
    chat = open_chat(terminals, home)
    chat.type("!sleep 60")
    chat.wait_for("sleep 60")
    for shown in range(1, 4):  # each line sent starts a new prompt
        chat.type("/status")
        chat.wait_for("waiting for you", count=shown)
        chat.child.kill(signal.SIGINT)
        chat.expect_screen("Stop the run")
        chat.key("n")  # go on
        chat.expect_screen_without("Stop the run")
    chat.child.kill(signal.SIGINT)
    chat.expect_screen("Stop the run")
    chat.key("y")
    chat.wait_for("— stopped")
    assert chat.child.isalive()
    assert chat.leave() == 0


def test_a_gateway_restart_is_survived_with_nothing_missed_and_nothing_twice(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    gw = make_gateway(**OPERATOR, TETHER_RUNS__DEFAULT_MODE="auto")
    make_runner(gw, env={"TETHER_RUNNER__RECONNECT_MAX_DELAY": "0.5"})
    chat = open_chat(terminals, home)
    chat.type("!printf 'one-%s\\n' 42")
    chat.wait_for("one-42")
    chat.wait_for("— done")
    session = only_session(home)

    gw.args = ("--listen", f"127.0.0.1:{gw.url.rsplit(':', 1)[1]}")  # where the runner dials
    gw.terminate()
    chat.wait_for("connection lost")
    gw.start()
    runner_online(home)
    # work in the session from elsewhere while the terminal may still be reconnecting
    started = run_cli(
        home, "--json", "runs", "start", "--session", session, "!printf 'two-%s\\n' 43"
    )
    assert started.returncode == 0, started.stderr
    chat.wait_for("connected again")
    shown = chat.wait_for("— done", count=2)
    assert shown.count("one-42") == 2  # the tool's output and the reply, once each
    assert shown.count("two-43") == 2
    assert shown.count("› !printf 'two") == 1  # said elsewhere: shown with its input
    chat.type("!printf 'three-%s\\n' 44")
    shown = chat.wait_for("— done", count=3)
    assert shown.count("one-42") == 2
    assert shown.count("two-43") == 2
    assert chat.leave() == 0


async def test_a_webhook_chat_continues_in_the_terminal_and_back(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    home: Path,
    hook: WebhookStandIn,
    terminals: list[ChatTerminal],
) -> None:
    config_toml(home / "config", hook.url, agent="operator")
    gw = make_gateway(**{SECRET_ENV: SECRET})
    make_runner(gw)
    token = await add_user(gw, "alice")
    linked = run_cli(home, "users", "link", "alice", "--channel", "webhook.ops", "--id", "u-alice")
    assert linked.returncode == 0, linked.stderr

    # work starts in the chat
    await post(gw.url, event("e1", "!echo from-chat"))
    asked = await hook.wait_for(lambda d: d["kind"] == "request")
    await post(gw.url, event("e2", f"/approve {asked['request']}"))
    await hook.wait_for(lambda d: "from-chat" in d["text"] and d["kind"] == "reply")

    # alice attaches her terminal to her chat's session: it shows the latest run, then live
    remote = ("--url", gw.ws_url, "--token", token)
    chat = open_chat(terminals, home, *remote, "--conversation", "webhook.ops:c1")
    chat.wait_for("— done")
    chat.expect_screen("webhook.ops:c1")
    await post(gw.url, event("e3", "!printf 'second-%s\\n' 2"))
    chat.wait_for(r"› !printf 'second")  # said in the chat, seen here live
    chat.wait_for(r"\? approval")
    chat.decide("a")  # decided here, for the chat's run
    chat.wait_for("— done", count=2)
    await hook.wait_for(lambda d: "second-2" in d["text"] and d["kind"] == "reply")

    # and back: typed here, asked and answered in the chat
    chat.type("!printf 'third-%s\\n' 3")
    asked = await hook.wait_for(lambda d: d["kind"] == "request" and "third" in d["text"])
    await post(gw.url, event("e4", f"/approve {asked['request']}", sender="u-alice"))
    shown = chat.wait_for("— done", count=3)
    assert shown.count("allowed once by you") == 3  # alice, here and in her chat
    assert "› !printf 'third" not in shown  # typed here: not echoed as if said elsewhere
    await hook.wait_for(lambda d: "third-3" in d["text"] and d["kind"] == "reply")
    sessions = json.loads(run_cli(home, "--json", "sessions", "list").stdout)["sessions"]
    assert [s["conversation_id"] for s in sessions] == ["webhook.ops:c1"]
    listing = run_cli(home, "sessions", "list").stdout
    assert "webhook.ops:c1" in listing
    assert chat.leave() == 0


async def test_remote_with_a_login_token_sees_only_its_own_and_a_bad_token_is_refused(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    gw = make_gateway(**OPERATOR)
    make_runner(gw)
    owner = open_chat(terminals, home)
    owner.type("!echo owner-work")
    owner.wait_for(r"\? approval")
    owner.decide("a")
    owner.wait_for("— done")
    owners = only_session(home)
    assert owner.leave() == 0

    token = await add_user(gw, "bob")
    remote = ("--url", gw.ws_url, "--token", token)
    bob = open_chat(terminals, home, *remote)
    bob.type("!printf 'bob-%s\\n' 4")
    bob.wait_for(r"\? approval")
    bob.decide("a")  # his own run: he may decide it
    shown = bob.wait_for("— done")
    assert "bob-4" in shown
    assert "owner-work" not in shown
    assert bob.leave() == 0

    # another person's session is not there for him, nor is another's conversation
    for target in (("--session", owners), ("--conversation", "console:local-admin")):
        denied = open_chat(terminals, home, *remote, *target)
        denied.wait_for("cannot attach: (session|conversation) .* does not exist")
        assert denied.wait_exit() == 1
    assert "owner-work" not in denied.transcript()
    for bad in ("ttu_bad.bad", token + "x"):
        refused = open_chat(terminals, home, "--url", gw.ws_url, "--token", bad)
        assert refused.wait_exit() == 1
        assert re.search(r"(?i)token", refused.transcript() + "".join(refused.screen))


def test_output_cannot_drive_the_terminal(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path, terminals: list[ChatTerminal]
) -> None:
    gw = make_gateway(**OPERATOR, TETHER_RUNS__DEFAULT_MODE="auto")
    make_runner(gw)
    chat = open_chat(terminals, home)
    chat.type(r"!printf 'a\033]0;pwned\007b\033[2Jc\033[31md\342\200\256e\n'")
    shown = chat.wait_for("— done")
    assert "abcde" in shown  # the text, without what it tried to do
    screen = "".join(chat.screen)
    assert "\x1b]0;pwned" not in screen
    assert "\x1b[2J" not in screen
    assert "\u202e" not in screen
    assert chat.leave() == 0
