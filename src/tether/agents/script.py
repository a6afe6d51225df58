"""``script``: a small agent that follows a script written in the run's input.

It exists to exercise the orchestrator end to end (tests, smoke checks, benchmarks)
without a model. One command per line:

    say TEXT            emit agent.message with TEXT (the last one is the output)
    events N [BYTES]    emit N agent.delta events with BYTES of text each (default 16)
    sleep SECONDS       do nothing for a while (returns early when cancelled)
    wait SECONDS        like sleep, but with the run in the ``waiting`` state
    steer SECONDS       wait up to SECONDS for steering input and say each one back
    fail REASON         end as failed with REASON
    crash               raise an exception (ends as failed/agent_error)
    hang                ignore cancellation and never return (tests escalation)
    tool RUNNER TOOL JSON [WORKSPACE]
                        call a tool on a runner; its JSON result becomes the output
                        (RUNNER ``-`` is the session's runner)
    ask QUESTION [CHOICE …]
                        ask the run's people; the answer becomes the output

It can call any tool on any runner, so it is a ``fixture``: only ``admin`` connections
(the local owner) may use it unless the config names more principals or roles.

``script`` declares ``resume`` and ``steering``: after a restart it skips the lines it
had finished (each is recorded as an ``agent.step`` event). ``script-once`` is the same
agent without ``resume``, so its runs end ``failed``/``interrupted`` after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex

from tether import __version__
from tether.agents.contract import Capabilities, Manifest, Outcome, Permissions, RunContext
from tether.errors import TetherError
from tether.protocol.events import AgentDelta, AgentMessage, AgentStep

__all__ = ["ScriptAgent"]


class ScriptAgent:
    def __init__(self, name: str = "script", *, resume: bool = True) -> None:
        self.name = name
        self.capabilities = Capabilities(resume=resume, steering=True, questions=True, fixture=True)
        self.manifest = Manifest(
            id=name,
            version=__version__,
            label="Script (test fixture)",
            description="Follows a script in the run's input: say, tool, ask, sleep … "
            "For tests, smoke checks and benchmarks; admin connections only by default.",
            capabilities=self.capabilities,
            permissions=Permissions(tools=["*"]),
        )

    async def run(self, ctx: RunContext) -> Outcome:
        lines = [line.strip() for line in ctx.input.splitlines() if line.strip()]
        done = 0
        if ctx.resumed:
            done = sum(1 for e in await ctx.history() if e.kind == AgentStep.KIND)
        output: str | None = None
        for index, line in enumerate(lines):
            if index < done:
                continue
            if ctx.cancelled.is_set():
                return Outcome(state="failed", reason="cancelled")
            try:
                words = shlex.split(line)
            except ValueError as exc:
                return Outcome(
                    state="failed", reason="bad_script", output=f"line {index + 1}: {exc}"
                )
            verb, args = words[0], words[1:]
            if verb == "say":
                output = " ".join(args)
                await ctx.emit(AgentMessage(text=output))
            elif verb == "events":
                size = int(args[1]) if len(args) > 1 else 16
                for i in range(int(args[0])):
                    await ctx.emit(AgentDelta(text="x" * size, index=i))
            elif verb in ("sleep", "wait"):
                if verb == "wait":
                    await ctx.set_waiting(True, "script")
                await _sleep(ctx, float(args[0]))
                if verb == "wait":
                    await ctx.set_waiting(False)
            elif verb == "steer":
                output = await _steer(ctx, float(args[0])) or output
            elif verb == "fail":
                return Outcome(
                    state="failed", reason=args[0] if args else "script_failed", output=output
                )
            elif verb == "tool":
                if len(args) < 3:
                    return Outcome(
                        state="failed",
                        reason="bad_script",
                        output="tool RUNNER TOOL JSON [WORKSPACE]",
                    )
                try:
                    tool_args = json.loads(args[2])
                except ValueError as exc:
                    return Outcome(
                        state="failed", reason="bad_script", output=f"line {index + 1}: {exc}"
                    )
                try:
                    result = await ctx.call_tool(
                        runner="" if args[0] == "-" else args[0],
                        tool=args[1],
                        args=tool_args,
                        workspace=args[3] if len(args) > 3 else "",
                    )
                except TetherError as exc:
                    return Outcome(state="failed", reason=exc.code, output=exc.message)
                output = json.dumps(result, ensure_ascii=False)
            elif verb == "ask":
                if not args:
                    return Outcome(state="failed", reason="bad_script", output="ask QUESTION")
                try:
                    output = await ctx.ask(args[0], args[1:])
                except TetherError as exc:
                    return Outcome(state="failed", reason=exc.code, output=exc.message)
                await ctx.emit(AgentMessage(text=output))
            elif verb == "crash":
                raise RuntimeError("the script asked to crash")
            elif verb == "hang":
                while True:
                    with contextlib.suppress(Exception):
                        await asyncio.sleep(3600)
            else:
                return Outcome(
                    state="failed", reason="bad_script", output=f"unknown command {verb!r}"
                )
            await ctx.emit(AgentStep(step=index + 1))
        return Outcome(state="succeeded", output=output)


async def _sleep(ctx: RunContext, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.cancelled.wait(), seconds)


async def _steer(ctx: RunContext, seconds: float) -> str | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last = None
    while loop.time() < deadline and not ctx.cancelled.is_set():
        for text in ctx.take_steering():
            last = f"steered: {text}"
            await ctx.emit(AgentMessage(text=last))
        await asyncio.sleep(0.02)
    return last
