"""The runner link both ways, across a network that drops (a proxy the test can cut).

- Gateway -> runner: tool output streamed while the connection drops reaches the run's
  events exactly once, in order (the runner numbers it, keeps it until acknowledged and
  replays it after the reconnect; the gateway drops what it already has).
- Runner -> gateway: a request sent again after a reconnect with the same key is
  answered once; its handler runs once.
- A second runner process with the same credential is refused with a clear reason and
  exits 4, while the first keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from tests.conftest import unit
from tests.support import runs as r
from tests.support.process import GatewayProcess, RunnerProcess, run_cli
from tests.support.proxy import Proxy, proxied_runner
from tether.app import Gateway
from tether.config import load_config
from tether.protocol.methods import METHODS, RUN_CREATE, RUNNER_ADD, RUNNERS, Method, register
from tether.protocol.runners import RunnerAddParams, RunnerRequest
from tether.protocol.runs import RunCreateParams
from tether.runner.daemon import RunnerDaemon
from tether.runner.enroll import enroll
from tether.runner.executor import CallExecutor
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import SandboxInfo
from tether.security.capability import CapabilityVerifier
from tether.transport.client import connect_ipc


async def test_output_streamed_across_a_drop_arrives_once_in_order(home: Path) -> None:
    # the call runs without asking: what is tested is the output across a drop
    gw = GatewayProcess(
        home, env={"TETHER_LIMITS__RUNNER_GRACE": "20", "TETHER_RUNS__DEFAULT_MODE": "auto"}
    )
    gw.start()
    proxy, runner, _ws = await proxied_runner(gw, home)
    try:
        command = "for i in $(seq 1 60); do echo line$i; sleep 0.05; done"
        script = f"tool box shell {shlex.quote(json.dumps({'command': command}))}"
        async with await connect_ipc(gw.socket) as c:
            created = await c.call(RUN_CREATE, RunCreateParams(input=script))
            await asyncio.sleep(0.8)
            assert proxy.cut() > 0  # the network drops while the command prints
            done = await r.wait_state(c, created.run.id, timeout=60)
            assert done.state == "succeeded", done.output
            outputs = [
                p["text"] for _, kind, p in await r.events(c, created.run.id)
                if kind == "tool.call.output"
            ]  # fmt: skip
        assert "".join(outputs) == "".join(f"line{i}\n" for i in range(1, 61))
        assert proxy.connections >= 2
    finally:
        await asyncio.to_thread(runner.stop)
        await proxy.aclose()
        gw.stop()


# ---- runner -> gateway requests --------------------------------------------------------


class AskParams(RunnerRequest, kw_only=True):
    text: str


class AskResult(msgspec.Struct, kw_only=True):
    text: str
    handled: int


@pytest.fixture
def ask_method() -> AsyncIterator[Method[AskParams, AskResult]]:
    method = register(Method("test.ask", AskParams, AskResult, RUNNERS, "A test request."))
    try:
        yield method  # type: ignore[misc]
    finally:
        METHODS.pop(method.name, None)


async def test_a_request_resent_after_a_drop_is_answered_once(
    home: Path, ask_method: Method[AskParams, AskResult]
) -> None:
    env = {"HOME": str(home), "TETHER_DATA_DIR": str(home / "data")}
    config = load_config(
        env={**env, "TETHER_RUNTIME_DIR": str(home / "run")},
        flags={"gateway": {"listen": "127.0.0.1:0"}, "limits": {"runner_grace": 20.0}},
    )
    handled = 0

    async def handler(runner_id: str, p: AskParams) -> AskResult:
        nonlocal handled
        handled += 1
        await asyncio.sleep(1.0)  # long enough for the test to cut the connection
        return AskResult(text=p.text.upper(), handled=handled)

    async with Gateway(config) as gateway:
        gateway.handlers.add(ask_method, gateway.parts.link.serve(handler))
        proxy = Proxy(int(gateway.server.url.rsplit(":", 1)[1]))
        await proxy.start()
        async with await connect_ipc(str(gateway.server.socket_path)) as admin:
            added = await admin.call(RUNNER_ADD, RunnerAddParams(name="asker"))
        identity, _ = await enroll(proxy.url, added.code, home / "asker", workspaces={})
        (home / "ws").mkdir()
        executor = CallExecutor(
            config=config.runner,
            workspaces={"app": home / "ws"},
            verifier=CapabilityVerifier(identity.gateway_public_key, identity.runner_id),
            sandbox=SandboxInfo(None, "off", "not needed here"),
            protected=ProtectedPaths([]),
        )
        daemon = RunnerDaemon(
            identity,
            executor,
            heartbeat_interval=30,
            shutdown_grace=1,
            reconnect_max_delay=0.5,
        )
        serving = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.registered.wait(), unit(20))
            params = AskParams(request_key=secrets.token_hex(8), text="hello")
            asking = asyncio.create_task(
                daemon.link.request(ask_method, params, deadline=time.monotonic() + unit(30))
            )
            await asyncio.sleep(0.3)
            assert proxy.cut() > 0  # mid-request
            answer = await asyncio.wait_for(asking, unit(30))
        finally:
            daemon.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, unit(20))
            await proxy.aclose()
    assert (answer.text, answer.handled, handled) == ("HELLO", 1, 1)
    assert proxy.connections >= 2


# ---- one credential, one process -------------------------------------------------------


async def test_a_second_process_with_the_same_credential_is_refused(home: Path) -> None:
    gw = GatewayProcess(home)
    gw.start()
    ws = home / "ws"
    ws.mkdir()
    first = RunnerProcess(home, "box")
    first.enroll(gw, {"app": ws})
    first.start()
    second = RunnerProcess(home, "box")  # the same config dir: the same identity
    try:
        second.start(wait=False)
        code = await asyncio.to_thread(second.wait, 30)
        assert code == 4
        assert "already connected from another process" in second.stderr()
        listing = json.loads(run_cli(home, "--json", "runners", "list").stdout)
        assert [(x["name"], x["online"]) for x in listing["runners"]] == [("box", True)]
        done = run_cli(home, "--json", "tools", "call", "box", "noop", "--args", '{"echo": "x"}')
        assert done.returncode == 0, done.stderr
    finally:
        second.stop()
        first.stop()
        gw.stop()
