"""The operator agent end to end: a member's commands go through policy and approvals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support import runs as r
from tests.support.people import add_user, as_user, kinds_of, open_request, resolve
from tests.support.process import GatewayProcess, RunnerProcess

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

ON_BOX = {
    "TETHER_RUNS__DEFAULT_AGENT": "operator",
    "TETHER_RUNS__DEFAULT_RUNNER": "box",
    "TETHER_RUNS__DEFAULT_WORKSPACE": "app",
}


async def test_a_member_drives_the_operator_with_approvals(
    make_gateway: MakeGateway, make_runner: MakeRunner, home: Path
) -> None:
    gw = make_gateway(**ON_BOX)  # operator is no fixture: members need no extra config
    make_runner(gw)
    workspace = home / "ws-box"
    (workspace / "README.md").write_text("hello from the workspace\n")
    async with await as_user(gw, await add_user(gw, "alice")) as alice:
        read = await r.start(alice, "/read README.md")  # reads are allowed (auto-read)
        done = await r.wait_state(alice, read.run.id)
        assert (done.state, done.output) == ("succeeded", "hello from the workspace\n")
        session = read.run.session_id

        shell = await r.start(alice, "!echo made > made.txt && cat made.txt", session_id=session)
        request = await open_request(alice, shell.run.id)  # shell asks
        assert request.plan["commands"] == ["echo made > made.txt", "cat made.txt"]
        assert not (workspace / "made.txt").exists()
        await resolve(alice, request.handle, "allow_once")
        done = await r.wait_state(alice, shell.run.id)
        assert (done.state, done.output) == ("succeeded", "made\n[exit 0]")

        write = await r.start(alice, "/write notes.md\nline one\nline two", session_id=session)
        request = await open_request(alice, write.run.id)
        await resolve(alice, request.id, "deny")
        done = await r.wait_state(alice, write.run.id)
        assert (done.state, done.reason) == ("failed", "approval_denied")
        assert "did not run" in (done.output or "")
        assert not (workspace / "notes.md").exists()

        listed = await r.start(alice, "/ls", session_id=session)
        done = await r.wait_state(alice, listed.run.id)
        assert (done.output or "").splitlines() == ["README.md", "made.txt"]
        events = await r.events(alice, listed.run.id)
        (decided,) = kinds_of(events, "tool.call.decided")
        assert decided["rule"] == "mode auto-read: read calls are allowed"


async def test_the_operator_says_where_work_would_go(make_gateway: MakeGateway) -> None:
    gw = make_gateway(TETHER_RUNS__DEFAULT_AGENT="operator")
    async with await as_user(gw, await add_user(gw, "alice")) as alice:
        created = await r.start(alice, "!ls")
        done = await r.wait_state(alice, created.run.id)
        assert (done.state, done.reason) == ("failed", "invalid_params")
        assert "tether sessions set" in (done.output or "")  # how to give it a runner
        helped = await r.start(alice, "help", session_id=created.run.session_id)
        assert "!COMMAND" in ((await r.wait_state(alice, helped.run.id)).output or "")
