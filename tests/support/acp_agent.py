"""A minimal ACP agent on the ``acp`` SDK, for tests of tether's ACP client.

Run as a program (stdio). Each prompt's text is a JSON list of steps, done in order;
what each step got back is said as agent text (one JSON line per step), so a test reads
the turn's reply to see what the client answered:

- ``{"say": TEXT}``: agent text;
- ``{"permission": {"kind": K, "title": T, "raw": {...}, "locations": [PATH]}}``: asks
  ``session/request_permission`` (options allow_always / allow_once / reject_once, or
  ``"options"`` given) and says the option chosen (or ``cancelled``); with ``"then"``
  steps, those run only when it was allowed;
- ``{"read": PATH}`` / ``{"write": [PATH, CONTENT]}``: ``fs/read_text_file`` /
  ``fs/write_text_file``, says the content or the error;
- ``{"terminal": COMMAND, "cwd": DIR?}``: ``terminal/create``, ``wait_for_exit``,
  ``output``, ``release``; says exit code and output; ``{"kill_terminal": COMMAND,
  "after": S}`` kills it after S seconds;
- ``{"tool": TITLE, "kind": K, "raw": {...}}``: reports a tool call it ran itself;
- ``{"sleep": S}``: waits (a cancel ends the turn with ``cancelled``);
- ``{"exit": CODE}``: the process exits at once (a crash).

Text that is not JSON is echoed (``echo: TEXT``, or ``echo (loaded): TEXT`` in a session
it loaded). ``TEST_ACP_NO_LOAD=1`` makes it advertise no ``session/load``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from typing import Any

from acp import PROTOCOL_VERSION, run_agent, start_tool_call, update_tool_call
from acp.helpers import update_agent_message_text
from acp.schema import (
    AgentCapabilities,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallLocation,
    ToolCallUpdate,
)


class ScriptedAgent:
    def __init__(self) -> None:
        self.conn: Any = None
        self.cancelled: dict[str, asyncio.Event] = {}
        self.loaded: set[str] = set()

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **_: Any) -> InitializeResponse:
        load = os.environ.get("TEST_ACP_NO_LOAD") != "1"
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=load),
        )

    async def new_session(self, cwd: str, **_: Any) -> NewSessionResponse:
        return NewSessionResponse(session_id=f"s-{uuid.uuid4().hex[:12]}")

    async def load_session(self, cwd: str, session_id: str, **_: Any) -> LoadSessionResponse:
        await self._say(session_id, "(history of the loaded session)")
        self.loaded.add(session_id)
        return LoadSessionResponse()

    async def authenticate(self, method_id: str, **_: Any) -> None:
        return None

    async def cancel(self, session_id: str, **_: Any) -> None:
        self.cancelled.setdefault(session_id, asyncio.Event()).set()

    async def _say(self, session_id: str, text: str) -> None:
        await self.conn.session_update(session_id, update_agent_message_text(text))

    async def prompt(self, session_id: str, prompt: list[Any], **_: Any) -> PromptResponse:
        stop = self.cancelled[session_id] = asyncio.Event()
        text = "".join(getattr(block, "text", "") for block in prompt)
        try:
            steps = json.loads(text)
        except ValueError:
            loaded = " (loaded)" if session_id in self.loaded else ""
            steps = [{"say": f"echo{loaded}: {text}"}]
        for step in steps if isinstance(steps, list) else [steps]:
            if stop.is_set():
                return PromptResponse(stop_reason="cancelled")
            said = await self._step(session_id, step, stop)
            if said is not None:
                await self._say(session_id, json.dumps(said) + "\n")
        if stop.is_set():
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn")

    async def _step(self, sid: str, step: dict[str, Any], stop: asyncio.Event) -> Any:
        conn = self.conn
        if "say" in step:
            await self._say(sid, str(step["say"]))
            return None
        if "sleep" in step:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), float(step["sleep"]))
            return {"slept": not stop.is_set()}
        if "exit" in step:
            sys.stdout.flush()
            os._exit(int(step["exit"]))
        if "permission" in step:
            ask = step["permission"]
            ident = f"tc-{uuid.uuid4().hex[:8]}"
            locations = [ToolCallLocation(path=p) for p in ask.get("locations") or []]
            call = ToolCallUpdate(
                tool_call_id=ident,
                title=ask.get("title") or "something",
                kind=ask.get("kind"),
                raw_input=ask.get("raw"),
                locations=locations or None,
            )
            options = [
                PermissionOption(option_id=o["id"], name=o["id"], kind=o["kind"])
                for o in ask.get("options")
                or [
                    {"id": "always", "kind": "allow_always"},
                    {"id": "once", "kind": "allow_once"},
                    {"id": "no", "kind": "reject_once"},
                ]
            ]
            await conn.session_update(
                sid,
                start_tool_call(
                    ident,
                    call.title or "",
                    kind=ask.get("kind"),
                    status="pending",
                    raw_input=ask.get("raw"),
                    locations=locations or None,
                ),
            )
            answer = await conn.request_permission(session_id=sid, tool_call=call, options=options)
            outcome = answer.outcome
            chosen = getattr(outcome, "option_id", None) or outcome.outcome
            done: list[Any] = []
            if chosen == "once":
                for inner in step.get("then") or []:
                    done.append(await self._step(sid, inner, stop))
            status = "completed" if chosen == "once" else "failed"
            await conn.session_update(sid, update_tool_call(ident, status=status))
            return (
                {"permission": chosen, "then": done} if step.get("then") else {"permission": chosen}
            )
        if "read" in step:
            try:
                got = await conn.read_text_file(session_id=sid, path=step["read"])
            except Exception as exc:
                return {"read_error": str(exc)}
            return {"read": got.content}
        if "write" in step:
            path, content = step["write"]
            try:
                await conn.write_text_file(session_id=sid, path=path, content=content)
            except Exception as exc:
                return {"write_error": str(exc)}
            return {"wrote": path}
        if "terminal" in step or "kill_terminal" in step:
            command = step.get("terminal") or step["kill_terminal"]
            made = await conn.create_terminal(session_id=sid, command=command, cwd=step.get("cwd"))
            tid = made.terminal_id
            if "kill_terminal" in step:
                await asyncio.sleep(float(step.get("after") or 0.5))
                await conn.kill_terminal(session_id=sid, terminal_id=tid)
            exited = await conn.wait_for_terminal_exit(session_id=sid, terminal_id=tid)
            out = await conn.terminal_output(session_id=sid, terminal_id=tid)
            await conn.release_terminal(session_id=sid, terminal_id=tid)
            return {"exit": exited.exit_code, "signal": exited.signal, "output": out.output}
        if "tool" in step:
            ident = f"own-{uuid.uuid4().hex[:8]}"
            await conn.session_update(
                sid,
                start_tool_call(
                    ident,
                    step["tool"],
                    kind=step.get("kind") or "read",
                    status="in_progress",
                    raw_input=step.get("raw"),
                ),
            )
            await conn.session_update(
                sid,
                update_tool_call(
                    ident,
                    status="completed",
                    raw_output={"output": step.get("output") or "done"},
                ),
            )
            return None
        return {"unknown_step": step}


def main() -> None:
    asyncio.run(run_agent(ScriptedAgent()))


if __name__ == "__main__":
    main()
