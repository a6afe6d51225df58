"""A runner the test scripts: enrolled through the CLI and ``POST /enroll`` with a real
credential, connected over a real WebSocket, answering ``tool.execute`` with exactly the
progress chunks and result bytes the test chose (what a hostile or buggy runner could
send), so the gateway's side is tested without depending on the real runner's output."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from tests.support.process import GatewayProcess, run_cli
from tether.errors import ToolFailed
from tether.protocol.methods import RUNNER_REGISTER, TOOL_EXECUTE, TOOL_PROGRESS, Method
from tether.protocol.runners import (
    RunnerRegisterParams,
    ToolExecuteParams,
    ToolInfo,
    ToolOutput,
    ToolProgressNote,
)
from tether.transport.client import RpcClient, connect_ws

__all__ = ["Reply", "ScriptedRunner", "enroll"]


@dataclass
class Reply:
    """What the runner does for one tool: stream ``chunks``, then answer ``result`` (raw
    JSON bytes) or fail with ``error``."""

    chunks: Sequence[tuple[str, str]] = ()
    result: bytes = b"{}"
    error: str | None = None
    during: Callable[[ToolExecuteParams], Awaitable[bytes | None]] | None = None
    """Awaited while the call runs (before the answer); bytes it returns are the result."""


async def enroll(gw: GatewayProcess, name: str) -> tuple[str, str]:
    """(runner id, credential) for a new runner ``name``, through the CLI and HTTP."""
    added = run_cli(gw.home, "--json", "runners", "add", name, user=gw.user)
    assert added.returncode == 0, added.stderr
    code = json.loads(added.stdout)["code"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/enroll", json={"code": code}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return body["runner_id"], body["credential"]


@dataclass
class ScriptedRunner:
    gw: GatewayProcess
    name: str = "box"
    replies: dict[str, Reply] = field(default_factory=dict)
    max_frame_bytes: int = 1024 * 1024
    runner_id: str = ""
    credential: str = ""
    executed: list[ToolExecuteParams] = field(default_factory=list)
    client: RpcClient | None = None

    async def start(self) -> ScriptedRunner:
        self.runner_id, self.credential = await enroll(self.gw, self.name)
        self.client = await connect_ws(
            self.gw.url,
            token=self.credential,
            role="runner",
            router=self,
            max_frame_bytes=self.max_frame_bytes,
        )
        tools = [
            ToolInfo(name=t, summary="scripted", risk="read", params_schema={"type": "object"})
            for t in self.replies
        ]
        await self.client.call(
            RUNNER_REGISTER,
            RunnerRegisterParams(
                version="scripted/1",
                boot_id=secrets.token_hex(8),
                tools=tools,
                workspaces=["app"],
            ),
        )
        return self

    def route(self, method: Method[Any, Any]) -> Callable[[Any], Awaitable[Any]] | None:
        return self._execute if method is TOOL_EXECUTE else None

    async def _execute(self, p: ToolExecuteParams) -> ToolOutput:
        self.executed.append(p)
        reply = self.replies[p.tool]
        assert self.client is not None
        for stream, text in reply.chunks:
            self.client.notify(
                TOOL_PROGRESS, ToolProgressNote(call_id=p.call_id, stream=stream, text=text)
            )  # type: ignore[arg-type]
        result = reply.result
        if reply.during is not None:
            result = await reply.during(p) or result
        if reply.error is not None:
            raise ToolFailed(reply.error)
        return ToolOutput(call_id=p.call_id, result=msgspec.Raw(result), duration=0.001)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
