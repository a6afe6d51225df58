"""JSON-RPC over a real child process's stdio: two id spaces, a withdrawn request, limits."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from tether.errors import ConnectionClosed
from tether.runner.agents.stdio_rpc import StdioRpc

AGENT = r"""
import json, sys, select
def send(m): sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def read(timeout):
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return json.loads(sys.stdin.readline()) if ready else None
hello = read(5)
send({"id": hello["id"], "result": {"echo": hello["params"]}})   # our id space
send({"id": 0, "method": "ask", "params": {"n": 1}})            # the agent's: answered
answer = read(5)
send({"id": 1, "method": "ask", "params": {"n": 2}})            # the agent's: withdrawn
send({"method": "serverRequest/resolved", "params": {"requestId": 1}})
late = read(1.0)
send({"method": "report", "params": {"answer": answer, "late": late}})
read(5)
"""


async def test_requests_both_ways_and_a_withdrawn_one_gets_no_answer() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    asked: list[int] = []
    rpc: StdioRpc

    def notified(method: str, params: dict[str, Any]) -> None:
        if method == "serverRequest/resolved":
            assert rpc.withdraw(params["requestId"])
        elif method == "report":
            reports.put_nowait(params)

    async def answer(method: str, params: dict[str, Any]) -> Any:
        asked.append(params["n"])
        if params["n"] == 2:
            await asyncio.Event().wait()  # a person who never decides
        return {"decision": "accept"}

    rpc = StdioRpc(proc.stdout, proc.stdin, on_notify=notified, on_request=answer)
    rpc.start()
    try:
        assert await rpc.call("hello", {"x": 1}, timeout=10) == {"echo": {"x": 1}}
        report = await asyncio.wait_for(reports.get(), 10)
        assert report["answer"] == {"id": 0, "result": {"decision": "accept"}}
        assert report["late"] is None  # the withdrawn request was not answered
        assert asked[:1] == [1]  # (the second may be withdrawn before it is even asked)
        assert not rpc.withdraw(0)  # answered already
    finally:
        await rpc.aclose()
        proc.kill()
        await proc.wait()


async def test_a_call_fails_when_the_agent_dies() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.readline()",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    rpc = StdioRpc(
        proc.stdout, proc.stdin, on_notify=lambda m, p: None, on_request=lambda m, p: None
    )  # type: ignore[arg-type,return-value]
    rpc.start()
    with pytest.raises(ConnectionClosed):
        await rpc.call("anything", {}, timeout=10)
    await rpc.aclose()
    await proc.wait()
