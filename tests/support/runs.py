"""Helpers for driving runs through a real gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.process import SCALE
from tether.protocol.methods import RUN_CREATE, RUN_EVENTS, RUN_GET
from tether.protocol.runs import RunCreated, RunCreateParams, RunEventsParams, RunGetParams, RunInfo
from tether.transport.client import RpcClient, connect_ipc

TERMINAL = {"succeeded", "failed", "cancelled", "expired"}


async def start(client: RpcClient, text: str, **kw: Any) -> RunCreated:
    return await client.call(RUN_CREATE, RunCreateParams(input=text, **kw))


async def wait_state(
    client: RpcClient, run_id: str, states: set[str] | None = None, timeout: float = 20.0
) -> RunInfo:
    """Poll until the run is in one of ``states`` (default: any terminal state)."""
    states = states or TERMINAL
    deadline = asyncio.get_running_loop().time() + timeout * SCALE
    while True:
        run = await client.call(RUN_GET, RunGetParams(run_id=run_id))
        if run.state in states:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} still {run.state} after {timeout} s")
        await asyncio.sleep(0.05)


async def events(client: RpcClient, run_id: str) -> list[tuple[int, str, Any]]:
    page = await client.call(RUN_EVENTS, RunEventsParams(run_id=run_id, limit=1000))
    return [(e.seq, e.kind, json.loads(bytes(e.payload))) for e in page.events]


async def kinds(client: RpcClient, run_id: str) -> list[str]:
    return [k for _, k, _ in await events(client, run_id)]


async def ipc(socket: str) -> RpcClient:
    return await connect_ipc(socket)
