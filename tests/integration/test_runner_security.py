"""A real `tether runner` process facing a scripted gateway that sends crafted calls.

Each case expects its error code, and that nothing ran (no file written, no command run).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import unit
from tests.support.process import tether_env
from tether.errors import TetherError
from tether.protocol.handshake import HelloParams, HelloResult
from tether.protocol.methods import HELLO, RUNNER_HEARTBEAT, RUNNER_REGISTER, TOOL_EXECUTE, Method
from tether.protocol.runners import RunnerRegistered, RunnerRegisterParams, ToolExecuteParams
from tether.protocol.session import RpcSession
from tether.protocol.system import Empty
from tether.security.capability import CapabilityIssuer
from tether.transport.connection import Handler
from tether.transport.websocket import WebSocketConnection

RUNNER_ID = "rnr_test"


class ScriptedGateway:
    """Speaks just enough of the gateway side for a runner to connect and take calls."""

    def __init__(self) -> None:
        self.conn: WebSocketConnection | None = None
        self.registered = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def route(self, method: Method[Any, Any]) -> Handler | None:
        if method is HELLO:
            return self._hello
        if method is RUNNER_REGISTER:
            return self._register
        if method is RUNNER_HEARTBEAT:
            return lambda _p: Empty()
        return lambda _p: None  # progress notifications

    def _hello(self, p: HelloParams) -> HelloResult:
        assert self.conn is not None
        self.conn.session.establish("runner")
        return HelloResult(
            protocol=1,
            role=p.role,
            principal="runner:test",
            server="scripted",
            max_frame_bytes=1 << 20,
            idle_timeout=90,
        )

    def _register(self, p: RunnerRegisterParams) -> RunnerRegistered:
        self.registered.set()
        return RunnerRegistered(runner_id=RUNNER_ID, name="test", heartbeat_interval=30)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(decode_text=False)
        await ws.prepare(request)
        session: RpcSession[Any] = RpcSession(local="gateway", peer=None, max_frame_bytes=1 << 20)
        self.conn = WebSocketConnection(ws, session, router=self, name="scripted")
        await self.conn.run()
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def aclose(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def rig(
    home: Path,
) -> AsyncIterator[tuple[ScriptedGateway, CapabilityIssuer, Path, subprocess.Popen[bytes]]]:
    key = Ed25519PrivateKey.generate()
    issuer = CapabilityIssuer(key)
    gateway = ScriptedGateway()
    await gateway.start()
    ws = home / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / ".ssh").mkdir()
    (ws / ".ssh" / "id").write_text("key")
    (home / "secret.txt").write_text("secret")
    (ws / "escape").symlink_to(home / "secret.txt")
    cfg = home / "cfg"
    cfg.mkdir(mode=0o700)
    identity = {
        "gateway_url": gateway.url,
        "runner_id": RUNNER_ID,
        "name": "test",
        "credential": "ttr_" + RUNNER_ID + "." + "x" * 43,
        "gateway_public_key": issuer.public_pem,
        "workspaces": {"app": str(ws)},
    }
    fd = os.open(cfg / "runner.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identity, f)
    env = tether_env(
        home, {"TETHER_CONFIG_DIR": str(cfg), "TETHER_RUNNER__DENIED_PATHS": str(ws / ".ssh")}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(gateway.registered.wait(), unit(20))
        yield gateway, issuer, ws, proc
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
        await gateway.aclose()


def request(
    issuer: CapabilityIssuer,
    tool: str,
    args: dict[str, Any],
    signer: CapabilityIssuer | None = None,
    **override: Any,
) -> ToolExecuteParams:
    call_id = override.pop("call_id", f"call_{time.time_ns()}")
    mint: dict[str, Any] = {
        "runner_id": RUNNER_ID,
        "call_id": call_id,
        "tool": tool,
        "args": args,
        "workspace": "app",
    }
    mint.update(override.pop("mint", {}))
    token, _ = (signer or issuer).mint(**mint)
    fields = {
        "call_id": call_id,
        "tool": tool,
        "args": args,
        "workspace": "app",
        "token": token,
        "timeout": 10.0,
    }
    fields.update(override)
    return ToolExecuteParams(**fields)


Case = Callable[[CapabilityIssuer, Path], ToolExecuteParams]
W = {"path": "made.txt", "content": "x"}
SHELL = {"command": "touch ran.txt"}


def other_key(_i: CapabilityIssuer) -> CapabilityIssuer:
    return CapabilityIssuer(Ed25519PrivateKey.generate())


CASES: list[tuple[str, Case, str, str]] = [
    (
        "no token",
        lambda i, w: request(i, "write_file", W, token=""),
        "capability_denied",
        "missing",
    ),
    (
        "forged signature",
        lambda i, w: request(i, "write_file", W, signer=other_key(i)),
        "capability_denied",
        "bad_signature",
    ),
    (
        "another runner's token",
        lambda i, w: request(i, "write_file", W, mint={"runner_id": "rnr_other"}),
        "capability_denied",
        "wrong_audience",
    ),
    (
        "expired",
        lambda i, w: request(
            i, "write_file", W, signer=CapabilityIssuer(i._key, clock=lambda: time.time() - 600)
        ),
        "capability_denied",
        "expired",
    ),
    (
        "tool mismatch",
        lambda i, w: request(i, "shell", SHELL, mint={"tool": "read_file"}),
        "capability_denied",
        "wrong_tool",
    ),
    (
        "argument mismatch",
        lambda i, w: request(i, "shell", SHELL, mint={"args": {"command": "echo harmless"}}),
        "capability_denied",
        "args_mismatch",
    ),
    (
        "workspace mismatch",
        lambda i, w: request(i, "write_file", W, mint={"workspace": "other"}),
        "capability_denied",
        "wrong_workspace",
    ),
    (
        "call mismatch",
        lambda i, w: request(i, "write_file", W, mint={"call_id": "call_other"}),
        "capability_denied",
        "wrong_call",
    ),
    (
        "escape by ..",
        lambda i, w: request(i, "write_file", {"path": "../made.txt", "content": "x"}),
        "policy_denied",
        "outside_workspace",
    ),
    (
        "escape by symlink",
        lambda i, w: request(i, "write_file", {"path": "escape", "content": "x"}),
        "policy_denied",
        "symlink",
    ),
    (
        "escape by absolute path",
        lambda i, w: request(i, "write_file", {"path": str(w.parent / "made.txt"), "content": "x"}),
        "policy_denied",
        "outside_workspace",
    ),
    (
        "denied path",
        lambda i, w: request(i, "write_file", {"path": ".ssh/made.txt", "content": "x"}),
        "policy_denied",
        "denied_path",
    ),
    (
        "outside the token's paths",
        lambda i, w: request(i, "write_file", W, mint={"paths": ["src"]}),
        "policy_denied",
        "outside_workspace",
    ),
    (
        "unknown workspace",
        lambda i, w: request(i, "write_file", W, workspace="other", mint={"workspace": "other"}),
        "policy_denied",
        "unknown_workspace",
    ),
    (
        "shell cwd escape",
        lambda i, w: request(i, "shell", {"command": "touch ran.txt", "cwd": ".."}),
        "policy_denied",
        "outside_workspace",
    ),
]


@pytest.mark.parametrize(("name", "make", "code", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_refused_and_nothing_ran(
    rig: Any, name: str, make: Case, code: str, reason: str
) -> None:
    gateway, issuer, ws, _ = rig
    params = make(issuer, ws)
    with pytest.raises(TetherError) as info:
        await gateway.conn.call(TOOL_EXECUTE, params, timeout=unit(10))
    assert (info.value.code, info.value.data.get("reason")) == (code, reason), info.value.message
    assert not (ws / "made.txt").exists()
    assert not (ws / "ran.txt").exists()
    assert not (ws.parent / "made.txt").exists()
    assert (ws.parent / "secret.txt").read_text() == "secret"
    assert not (ws / ".ssh" / "made.txt").exists()


async def test_a_valid_call_runs_once_and_a_copy_is_a_replay(rig: Any) -> None:
    gateway, issuer, ws, _ = rig
    params = request(issuer, "shell", {"command": "echo once >> ran.txt"})
    out = await gateway.conn.call(TOOL_EXECUTE, params, timeout=unit(10))
    assert json.loads(bytes(out.result))["exit_code"] == 0
    with pytest.raises(TetherError) as info:
        await gateway.conn.call(TOOL_EXECUTE, params, timeout=unit(10))
    assert (info.value.code, info.value.data["reason"]) == ("capability_denied", "replayed")
    resent = ToolExecuteParams(
        **{**{f: getattr(params, f) for f in params.__struct_fields__}, "resend": True}
    )
    again = await gateway.conn.call(TOOL_EXECUTE, resent, timeout=unit(10))
    assert bytes(again.result) == bytes(out.result)  # the recorded outcome, not a second run
    assert (ws / "ran.txt").read_text() == "once\n"
    unknown = request(issuer, "shell", {"command": "echo twice >> ran.txt"}, resend=True)
    with pytest.raises(TetherError) as info:
        await gateway.conn.call(TOOL_EXECUTE, unknown, timeout=unit(10))
    assert info.value.data["reason"] == "unknown_call"
    assert (ws / "ran.txt").read_text() == "once\n"


async def test_a_token_for_a_new_call_cannot_be_reused(rig: Any) -> None:
    gateway, issuer, _ws, _ = rig
    first = request(issuer, "write_file", {"path": "a.txt", "content": "1"}, call_id="call_a")
    await gateway.conn.call(TOOL_EXECUTE, first, timeout=unit(10))
    stolen = ToolExecuteParams(
        **{**{f: getattr(first, f) for f in first.__struct_fields__}, "call_id": "call_b"}
    )
    with pytest.raises(TetherError) as info:
        await gateway.conn.call(TOOL_EXECUTE, stolen, timeout=unit(10))
    assert info.value.data["reason"] == "wrong_call"
