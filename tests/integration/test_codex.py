"""Codex (the real `codex app-server`) hosted on a real runner, driven through a real
gateway against the scripted model server: approvals, declines, file changes, questions,
interrupts, steering, gateway and runner restarts, crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import runs as r
from tests.support.agents import MODEL_KEY, codex_config, escalated
from tests.support.model_server import ModelServer
from tests.support.people import kinds_of, open_request, resolve
from tests.support.process import GatewayProcess, RunnerProcess
from tether.transport.client import connect_ipc

MakeGateway = Callable[..., GatewayProcess]
MakeRunner = Callable[..., RunnerProcess]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def model() -> AsyncIterator[Callable[[list[dict[str, Any]]], Any]]:
    servers: list[ModelServer] = []

    async def start(script: list[dict[str, Any]]) -> ModelServer:
        server = await ModelServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def stack(
    make_gateway: MakeGateway,
    make_runner: MakeRunner,
    server: ModelServer,
    tmp_path: Path,
    **gateway_env: str,
) -> tuple[GatewayProcess, RunnerProcess]:
    gw = make_gateway(
        TETHER_RUNS__DEFAULT_RUNNER="box",
        TETHER_RUNS__DEFAULT_WORKSPACE="app",
        TETHER_RUNS__DEFAULT_MODE="ask",
        **gateway_env,
    )
    config = codex_config(tmp_path / "runner.toml", server)
    runner = make_runner(
        gw, env={"TETHER_CONFIG": str(config), "SCRIPTED_API_KEY": MODEL_KEY}
    )
    return gw, runner


async def test_a_command_approved_by_a_person_runs_in_the_workspace(
    make_gateway: MakeGateway, make_runner: MakeRunner, model: Any, home: Path, tmp_path: Path
) -> None:
    server = await model(
        [escalated("echo agent-was-here > proof.txt && cat proof.txt"), {"text": "Wrote it."}]
    )
    gw, runner = stack(make_gateway, make_runner, server, tmp_path)
    async with await connect_ipc(gw.socket) as c:
        created = await r.start(c, "create proof.txt", agent="codex")
        run_id = created.run.id
        try:
            request = await open_request(c, run_id, timeout=20)
        except AssertionError:
            print(await r.events(c, run_id))
            print("RUNNER", runner.stderr()[-5000:])
            print("GW", gw.stderr()[-5000:])
            raise
        assert request.plan["tool"] == "shell"
        assert request.plan["commands"] == ["echo agent-was-here > proof.txt", "cat proof.txt"]
        await resolve(c, request.id, "allow_once")
        run = await r.wait_state(c, run_id, timeout=60)
        events = await r.events(c, run_id)
    assert run.state == "succeeded", (run, [k for _, k, _ in events])
    assert run.output == "Wrote it."
    assert (home / "ws-box" / "proof.txt").read_text() == "agent-was-here\n"
    kinds = [k for _, k, _ in events]
    assert kinds.count("approval.requested") == 1
    succeeded = kinds_of(events, "tool.call.succeeded")
    assert succeeded and "agent-was-here" in succeeded[0]["result"]["output"]
