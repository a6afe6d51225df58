"""``operator``: the built-in agent without a model. What you type is what runs.

    !COMMAND        run COMMAND with the shell tool in the session's workspace
    /read PATH      show a file
    /ls [PATH]      list a directory (default: the workspace)
    /write PATH     write the lines after this one to PATH
    help            this list

Every action is a tool call on the session's runner, so it takes the same path as any
agent's: policy decides, a person approves where policy says so (the run waits), and
the runner checks its token and its own policy. Nothing is resumed after a gateway
restart (a command is never run twice on its own); such a run ends ``interrupted``.
"""

from __future__ import annotations

import json
from typing import Any

from tether import __version__
from tether.agents.contract import Capabilities, Manifest, Outcome, Permissions, RunContext
from tether.errors import TetherError
from tether.protocol.chat_input import own_words
from tether.protocol.events import AgentMessage

__all__ = ["HELP", "OperatorAgent"]

HELP = """\
operator: type what should run on the session's runner.
  !COMMAND        run a shell command in the workspace (e.g. !git status)
  /read PATH      show a file
  /ls [PATH]      list a directory
  /write PATH     write the following lines to PATH
  help            this list
Policy decides each one; what asks waits for your approval (tether approvals list)."""

MAX_SHOWN = 64 * 1024
"""Characters of a result put in the reply (the full result is in the run's events)."""


class OperatorAgent:
    def __init__(self) -> None:
        self.name = "operator"
        self.capabilities = Capabilities()
        self.manifest = Manifest(
            id="operator",
            version=__version__,
            label="Operator (no model)",
            description="What you type runs on the session's runner: !COMMAND, /read, /ls, "
            "/write, help; through policy and approvals like any agent.",
            capabilities=self.capabilities,
            permissions=Permissions(tools=["shell", "read_file", "list_dir", "write_file"]),
            commands=["read", "ls", "write"],
        )

    async def run(self, ctx: RunContext) -> Outcome:
        text = own_words(ctx.input).strip()  # never a quoted message or a file's name
        head, _, rest = text.partition("\n")
        word, _, arg = head.partition(" ")
        arg = arg.strip()
        if text in ("", "help", "/help", "?"):
            return await _say(ctx, HELP)
        if text.startswith("!"):
            command = text[1:].strip()
            if not command:
                return await _fail(ctx, "bad_command", "say which command: !COMMAND")
            return await _call(ctx, "shell", {"command": command})
        if word == "/read" and arg:
            return await _call(ctx, "read_file", {"path": arg})
        if word == "/ls":
            return await _call(ctx, "list_dir", {"path": arg or "."})
        if word == "/write" and arg:
            return await _call(ctx, "write_file", {"path": arg, "content": rest})
        return await _fail(ctx, "bad_command", f"I do not know {head[:80]!r}.\n{HELP}")


async def _call(ctx: RunContext, tool: str, args: dict[str, Any]) -> Outcome:
    try:
        result = await ctx.call_tool(runner="", tool=tool, args=args)
    except TetherError as exc:
        return await _fail(ctx, exc.code, exc.message)
    return await _say(ctx, render(tool, result))


async def _say(ctx: RunContext, text: str) -> Outcome:
    await ctx.emit(AgentMessage(text=text))
    return Outcome(state="succeeded", output=text)


async def _fail(ctx: RunContext, reason: str, text: str) -> Outcome:
    await ctx.emit(AgentMessage(text=text))
    return Outcome(state="failed", reason=reason, output=text)


def render(tool: str, result: Any) -> str:
    """A tool's JSON result as the text a person reads."""
    if not isinstance(result, dict):
        return _cut(json.dumps(result, ensure_ascii=False))
    if tool == "shell":
        out = _cut(str(result.get("output", "")))
        notes = [f"exit {result.get('exit_code')}"]
        notes += ["timed out"] if result.get("timed_out") else []
        notes += ["output truncated"] if result.get("truncated") else []
        gap = "" if not out or out.endswith("\n") else "\n"
        return f"{out}{gap}[{', '.join(notes)}]"
    if tool == "read_file":
        if result.get("binary"):
            return f"{result.get('path')}: a binary file of {result.get('size')} bytes"
        more = " (more lines follow)" if result.get("truncated") else ""
        return _cut(str(result.get("content", ""))) + more
    if tool == "list_dir":
        names = [
            e["name"] + ("/" if e.get("type") == "dir" else "")
            for e in result.get("entries", [])
            if isinstance(e, dict)
        ]
        more = "\n…" if result.get("truncated") else ""
        return ("\n".join(names) or "(empty)") + more
    if tool == "write_file":
        verb = "created" if result.get("created") else "wrote"
        return f"{verb} {result.get('path')} ({result.get('bytes_written')} bytes)"
    return _cut(json.dumps(result, ensure_ascii=False, indent=2))


def _cut(text: str) -> str:
    if len(text) <= MAX_SHOWN:
        return text
    return text[:MAX_SHOWN] + f"\n[… {len(text) - MAX_SHOWN} more characters in the run's events]"
