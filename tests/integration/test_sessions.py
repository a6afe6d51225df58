"""Session settings: agent, runner, workspace and mode; defaults from config; overrides."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support import runs as r
from tests.support.people import open_request, resolve
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tether.errors import InvalidParams, NotFound
from tether.protocol.methods import SESSION_GET, SESSION_UPDATE
from tether.protocol.runs import SessionGetParams, SessionUpdateParams
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]
NOOP = """tool '' noop '{"echo": "x"}'"""
"""A tool call that names no runner: it goes to the session's."""


async def test_settings_apply_to_new_runs(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway(TETHER_RUNS__DEFAULT_MODE="auto-read")
    make_runner(gw)
    async with await connect_ipc(gw.socket) as c:
        first = await r.start(c, "say hi")
        sid = first.run.session_id
        session = await c.call(SESSION_GET, SessionGetParams(session_id=sid))
        assert (session.agent, session.runner_id, session.workspace, session.mode) == (
            "script",
            None,
            None,
            "auto-read",  # a new session takes the defaults from config
        )
        await r.wait_state(c, first.run.id)
        # a call that names no runner has nowhere to go yet
        orphan = await r.start(c, NOOP, session_id=sid, steer=False)
        failed = await r.wait_state(c, orphan.run.id)
        assert (failed.state, failed.reason) == ("failed", "invalid_params")
        assert "sessions set" in (failed.output or "")

        updated = await c.call(
            SESSION_UPDATE,
            SessionUpdateParams(session_id=sid, runner="box", workspace="app", mode="ask"),
        )
        assert (updated.runner_id is not None, updated.workspace, updated.mode) == (
            True,
            "app",
            "ask",
        )
        routed = await r.start(c, NOOP, session_id=sid, steer=False)
        request = await open_request(c, routed.run.id)  # mode ask: even a read asks
        assert request.plan["tool"] == "noop"
        await resolve(c, request.handle, "allow_once")
        done = await r.wait_state(c, routed.run.id)
        assert (done.state, json.loads(done.output or "{}")["echo"]) == ("succeeded", "x")

        once = await r.start(c, "say once", session_id=sid, agent="script-once", steer=False)
        assert once.run.agent == "script-once"  # this run only
        assert (await c.call(SESSION_GET, SessionGetParams(session_id=sid))).agent == "script"

        cleared = await c.call(SESSION_UPDATE, SessionUpdateParams(session_id=sid, runner=""))
        assert cleared.runner_id is None
        assert cleared.workspace == "app"


async def test_bad_settings_are_refused(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    async with await connect_ipc(gw.socket) as c:
        sid = (await r.start(c, "say hi")).run.session_id
        with pytest.raises(NotFound):
            await c.call(SESSION_UPDATE, SessionUpdateParams(session_id=sid, runner="nobody"))
        with pytest.raises(InvalidParams):
            await c.call(SESSION_UPDATE, SessionUpdateParams(session_id=sid, agent="nope"))
        with pytest.raises(NotFound):
            await c.call(SESSION_UPDATE, SessionUpdateParams(session_id="ses_nope", mode="auto"))
        raw = {"session_id": sid, "mode": "reckless"}
        with pytest.raises(InvalidParams):
            await c.call(SESSION_UPDATE, SessionUpdateParams(**raw))  # type: ignore[arg-type]


def test_cli_sessions_set_and_tools_list(
    make_gateway: MakeGateway, make_runner: MakeRunner
) -> None:
    gw = make_gateway()
    make_runner(gw)
    started = run_cli(gw.home, "--json", "runs", "start", "say hi")
    assert started.returncode == 0, started.stderr
    sid = json.loads(started.stdout)["run"]["session_id"]
    done = run_cli(gw.home, "sessions", "set", sid, "--runner", "box", "--mode", "auto")
    assert done.returncode == 0, done.stderr
    assert "mode auto" in done.stdout
    shown = json.loads(run_cli(gw.home, "--json", "sessions", "show", sid).stdout)
    assert (shown["workspace"], shown["mode"]) == (None, "auto")
    assert shown["runner_id"].startswith("rnr_")
    listed = run_cli(gw.home, "sessions", "list")
    assert "RUNNER" in listed.stdout
    assert "auto" in listed.stdout
    bad = run_cli(gw.home, "sessions", "set", sid, "--mode", "reckless")
    assert bad.returncode == 2
    assert "ask, auto-read or auto" in bad.stderr
    nothing = run_cli(gw.home, "sessions", "set", sid)
    assert nothing.returncode == 2
    tools = run_cli(gw.home, "tools", "list", "box")
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.split("\n")[0].split() == ["TOOL", "RISK", "SUMMARY"]
    assert "shell" in tools.stdout
    assert "exec" in tools.stdout
    data = json.loads(run_cli(gw.home, "--json", "tools", "list", "box").stdout)
    noop = next(t for t in data["tools"] if t["name"] == "noop")
    assert noop["params_schema"]["type"] == "object"
    offline = run_cli(gw.home, "tools", "list", "nobody")
    assert offline.returncode == 1
