"""An ACP agent's terminals, without an agent: output once ended, cut from the end to the
agent's limit; a refused command ends 126 with tether's reason; kill cancels the call."""

from __future__ import annotations

import asyncio

from tether.protocol.hosted import AgentToolAnswer
from tether.runner.agents.acp_terminals import Exit, Terminals


async def test_output_comes_once_the_command_ended_and_is_cut_from_the_end() -> None:
    cancelled: list[str] = []
    terminals = Terminals(cancelled.append)
    gate: asyncio.Future[AgentToolAnswer] = asyncio.get_running_loop().create_future()

    async def run() -> AgentToolAnswer:
        return await gate

    term = terminals.add(asyncio.ensure_future(run()), "call_1", limit=4)
    assert terminals.output(term) == ("", False, None)
    gate.set_result(AgentToolAnswer(ok=True, result={"exit_code": 3, "output": "abcdefgh"}))
    assert await terminals.wait(term) == Exit(3)
    assert terminals.output(term) == ("efgh", True, Exit(3))
    terminals.release(term)
    assert not terminals.has(term)
    assert cancelled == []  # it had ended: nothing to cancel


async def test_a_refused_command_ends_126_and_kill_cancels_a_running_one() -> None:
    cancelled: list[str] = []
    terminals = Terminals(cancelled.append)

    async def refused() -> AgentToolAnswer:
        return AgentToolAnswer(ok=False, code="policy_denied", message="no network tools")

    term = terminals.add(asyncio.ensure_future(refused()), "call_1", limit=None)
    assert await terminals.wait(term) == Exit(126)
    assert terminals.output(term)[0] == "tether: no network tools\n"

    async def forever() -> AgentToolAnswer:
        await asyncio.sleep(3600)
        raise AssertionError

    running = terminals.add(asyncio.ensure_future(forever()), "call_2", limit=None)
    terminals.kill(running)
    assert cancelled == ["call_2"]
    terminals.close()
    assert await terminals.wait(running) == Exit(None, "SIGKILL")
