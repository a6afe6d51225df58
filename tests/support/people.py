"""Helpers for tests with people in them: users, their connections, their requests."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
from typing import Any

from tests.support.process import SCALE, GatewayProcess
from tether.protocol.access import (
    RequestInfo,
    RequestListParams,
    RequestResolveParams,
    UserAddParams,
)
from tether.protocol.methods import REQUEST_LIST, REQUEST_RESOLVE, RUN_LIST, USER_ADD
from tether.protocol.runs import RunListParams
from tether.transport.client import RpcClient, connect_ipc, connect_ws

MEMBERS_MAY_SCRIPT = {"TETHER_RUNS__FIXTURE_ROLES": "admin,member"}
OPERATOR = {
    "TETHER_RUNS__DEFAULT_AGENT": "operator",
    "TETHER_RUNS__DEFAULT_RUNNER": "box",
    "TETHER_RUNS__DEFAULT_WORKSPACE": "app",
}
"""New sessions run the operator agent on runner ``box``, workspace ``app``."""
"""Gateway env that lets members use the ``script`` fixture agent."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shell(command: str, runner: str = "box") -> str:
    return f"tool {runner} shell {shlex.quote(json.dumps({'command': command}))}"


async def add_user(gw: GatewayProcess, name: str, role: str = "member") -> str:
    async with await connect_ipc(gw.socket) as admin:
        added = await admin.call(USER_ADD, UserAddParams(name=name, role=role))  # type: ignore[arg-type]
    assert added.token.startswith("ttu_")
    return added.token


async def as_user(gw: GatewayProcess, token: str, role: str = "client") -> RpcClient:
    return await connect_ws(gw.ws_url, token=token, role=role)


async def open_request(client: RpcClient, run_id: str, timeout: float = 20) -> RequestInfo:
    """Wait until the run has an open request the client may decide."""
    deadline = asyncio.get_running_loop().time() + timeout * SCALE
    while True:
        found = await client.call(REQUEST_LIST, RequestListParams(run_id=run_id))
        if found.requests:
            return found.requests[0]
        assert asyncio.get_running_loop().time() < deadline, f"no request for run {run_id}"
        await asyncio.sleep(0.05)


async def resolve(
    client: RpcClient, ref: str, decision: str | None = None, answer: str | None = None
) -> RequestInfo:
    params = RequestResolveParams(request=ref, decision=decision, answer=answer)  # type: ignore[arg-type]
    return await client.call(REQUEST_RESOLVE, params)


async def until_closed(client: RpcClient) -> None:
    for _ in range(100):
        await client.call(RUN_LIST, RunListParams())
        await asyncio.sleep(0.05)


def kinds_of(events: list[tuple[int, str, Any]], kind: str) -> list[dict[str, Any]]:
    return [p for _, k, p in events if k == kind]
