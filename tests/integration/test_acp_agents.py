"""The real ACP agents (Claude Code, Gemini CLI, codex-acp) hosted on a real runner in
its sandbox, driven through a real gateway against the scripted model server: a
permission approved and a file written in the workspace, one denied, a cancel, Gemini's
`fs/*` requests as tether tool calls, and a command codex-acp asks to run."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import runs as r
from tests.support.agents import MODEL_KEY, acp_preset_config, escalated, program
from tests.support.model_server import ModelServer
from tests.support.people import kinds_of, open_request, resolve
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tether.protocol.methods import RUN_CANCEL
from tether.protocol.runs import RunCancelParams
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

pytestmark = pytest.mark.timeout(180)


def stack(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    agent: str,
    server: ModelServer,
    tmp_path: Path,
    *,
    mode: str = "ask",
    runner_env: dict[str, str] | None = None,
) -> tuple[GatewayProcess, RunnerProcess]:
    gw = make_gateway(
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        TETHER_RUNS__DEFAULT_MODE=mode,
    )
    config = acp_preset_config(tmp_path / "runner.toml", agent, server)
    env = {"TETHER_CONFIG": str(config), "SCRIPTED_API_KEY": MODEL_KEY, **(runner_env or {})}
    return gw, make_runner(gw, env=env)


def show(run: Any, events: list[Any]) -> str:
    lines = [f"{run.state} {run.reason}: {run.output}"]
    lines += [f"{k} {json.dumps(p)[:400]}" for _, k, p in events]
    return "\n".join(lines)


WRITE = {
    "claude": lambda ws: {
        "tool": "Write",
        "args": {"file_path": f"{ws}/hello.txt", "content": "hi from claude\n"},
    },
    "gemini": lambda ws: {
        "tool": "write_file",
        "args": {"file_path": f"{ws}/hello.txt", "content": "hi from gemini\n"},
    },
}


@pytest.mark.parametrize("agent", ["claude", "gemini"])
async def test_an_approved_write_lands_in_the_workspace(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    model: Any,
    home: Path,
    tmp_path: Path,
    agent: str,
) -> None:
    workspace = home / "ws-box"
    server = await model([WRITE[agent](workspace), {"text": "Wrote hello.txt."}])
    gw, _ = stack(make_gateway, make_runner, agent, server, tmp_path, mode="auto-read")
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "write hello.txt", agent=agent)).run.id
        request = await open_request(c, run_id, timeout=90)
        await resolve(c, request.id, "allow_once")
        run = await r.wait_state(c, run_id, timeout=90)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", show(run, events)
    # one question for one write: the file write Gemini then asks its client for carries
    # out the permission already given
    assert len(kinds_of(events, "approval.requested")) == 1, show(run, events)
    assert run.output == "Wrote hello.txt.", show(run, events)
    assert (workspace / "hello.txt").read_text() == f"hi from {agent}\n"
    requested = [x["tool"] for x in kinds_of(events, "tool.call.requested")]
    if agent == "gemini":
        # Gemini writes through its client: the runner's file code, under a token
        assert "write_file" in requested, show(run, events)
        write = next(
            x for x in kinds_of(events, "tool.call.requested") if x["tool"] == "write_file"
        )
        assert write["args"] == {"path": "hello.txt", "content": "hi from gemini\n"}
    else:
        assert requested == ["apply_patch"], show(run, events)


@pytest.mark.parametrize("agent", ["claude", "gemini"])
async def test_a_denied_write_is_not_made_and_the_agent_goes_on(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    model: Any,
    home: Path,
    tmp_path: Path,
    agent: str,
) -> None:
    workspace = home / "ws-box"
    server = await model([WRITE[agent](workspace), {"text": "Understood, not written."}])
    gw, _ = stack(make_gateway, make_runner, agent, server, tmp_path, mode="auto-read")
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "write hello.txt", agent=agent)).run.id
        request = await open_request(c, run_id, timeout=90)
        await resolve(c, request.id, "deny")
        run = await r.wait_state(c, run_id, timeout=90)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", show(run, events)
    assert run.output == "Understood, not written."
    assert not (workspace / "hello.txt").exists()
    assert "deny" in [d["decision"] for d in kinds_of(events, "tool.call.decided")]
    assert not [x for x in kinds_of(events, "tool.call.requested") if x["tool"] == "write_file"]


@pytest.mark.parametrize("agent", ["claude", "gemini"])
async def test_cancel_stops_the_agent_mid_turn(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, tmp_path: Path, agent: str
) -> None:
    server = await model([{"text": "too late", "delay": 60}])
    gw, _ = stack(make_gateway, make_runner, agent, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "think for a long time", agent=agent)).run.id
        await r.wait_state(c, run_id, {"running"}, timeout=60)
        for _ in range(200):  # the turn has reached the model
            if server.requests:
                break
            await asyncio.sleep(0.1)
        await c.call(RUN_CANCEL, RunCancelParams(run_id=run_id))
        run = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert run.state == "cancelled", show(run, events)
    assert "too late" not in (run.output or "")


async def test_codex_acp_runs_a_command_a_person_approved(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    """codex-acp runs commands in its own bubblewrap sandbox; nested in the runner's it
    needs user namespaces a root runner does not get, so there the runner's own sandbox
    is off (the operator's explicit choice) and codex-acp's is the one that applies."""
    server = await model([escalated("echo acp-was-here > proof.txt"), {"text": "Done."}])
    env = {} if _nested_sandbox() else {"TETHER_RUNNER__SANDBOX": "off"}
    gw, _ = stack(make_gateway, make_runner, "codex-acp", server, tmp_path, runner_env=env)
    async with await connect_ipc(gw.socket) as c:
        run_id = (await r.start(c, "make proof.txt", agent="codex-acp")).run.id
        try:
            request = await open_request(c, run_id, timeout=90)
        except AssertionError:
            run = await r.wait_state(c, run_id, timeout=5)
            raise AssertionError(show(run, await r.events(c, run_id))) from None
        assert request.plan["tool"] == "shell"
        assert request.plan["commands"] == ["echo acp-was-here > proof.txt"]
        await resolve(c, request.id, "allow_once")
        run = await r.wait_state(c, run_id, timeout=90)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", show(run, events)
    assert (home / "ws-box" / "proof.txt").read_text() == "acp-was-here\n"
    assert "Done." in (run.output or "")


def _nested_sandbox() -> bool:
    """Whether bubblewrap works inside bubblewrap here (not as root)."""
    return os.geteuid() != 0


def test_agents_list_here_shows_each_installed_preset_and_its_version(
    home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "runner.toml"
    names = {"claude": "claude-agent-acp", "gemini": "gemini", "codex-acp": "codex-acp"}
    config.write_text(
        "".join(f'[agents.{a}]\ncommand = "{program(n)}"\n' for a, n in names.items())
        + '[agents.codex]\ncommand = "no-such-codex"\n'
    )
    done = run_cli(home, "agents", "list", "--here", "--json", env={"TETHER_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    found = {row["agent"]: row for row in json.loads(done.stdout)}
    assert found["claude"]["version"] == "0.49.0"
    assert found["gemini"]["version"] == "0.61.0"
    assert found["codex-acp"]["version"] == "0.16.0"
    assert found["codex-acp"]["program"].endswith("/bin/codex-acp")  # the native binary
    assert (found["claude"]["problem"], found["gemini"]["problem"]) == (None, None)
    if not _nested_sandbox():
        assert "bubblewrap" in found["codex-acp"]["problem"]
    assert "not installed" in found["codex"]["problem"]
    assert "set agents.acp.command" in found["acp"]["problem"]
    human = run_cli(home, "agents", "list", "--here", env={"TETHER_CONFIG": str(config)})
    assert "0.49.0" in human.stdout
    assert "ready" in human.stdout
