"""ACP agents (Claude Code, Gemini CLI, codex-acp) as hosted agents, on the ``acp`` SDK.

:class:`AcpSession` starts the program (inside the runner's sandbox), does
``initialize`` and ``session/new`` (or ``session/load`` to resume, where the agent can;
otherwise the conversation starts fresh and the turn says so), and runs turns with
``session/prompt``. What the agent says becomes catalogue events of the turn:

- ``agent_message_chunk`` -> ``agent.delta``; the text between two tool calls ->
  ``agent.message``; the last such text is the turn's reply; the prompt's ``usage`` ->
  ``agent.usage``; ``plan`` -> ``agent.status``;
- ``tool_call``/``tool_call_update`` -> ``tool.call.*`` (call ids derived from the run and
  the agent's tool call id). A call the agent ran without asking is recorded as decided
  by ``agent_sandbox``; one it asked about was decided by tether.

What it asks:

- ``session/request_permission`` asks the gateway (policy, then a person). The answer is
  the agent's ``allow_once`` option or its ``reject_once`` one (``cancelled`` while the
  turn stops): "allow for this session" stays a rule inside tether, and an agent that
  offers no "once" option is refused. Policy judges ``rawInput`` (the command or paths
  that would be used), never the agent's title for it.
- ``fs/read_text_file``, ``fs/write_text_file`` and ``terminal/*`` are tether tool calls
  (``read_file``, ``write_file``, ``shell``): the runner asks the gateway
  (``agent.tool``), which decides, mints the token and sends the call back here, where
  the file code and the sandboxed shell run it. A write or command that carries out a
  permission tether just granted for the same paths or command is decided by that grant.
  A read of a missing file answers empty content (Gemini checks files that way).

``session/cancel`` stops a turn (pending permission requests are answered
``cancelled``); the host kills the process after a grace period if it does not stop.
What a tool call stands for is worked out in :mod:`tether.runner.agents.acp_calls`, and
terminals are kept by :mod:`tether.runner.agents.acp_terminals`; this module is the only
one that imports the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, text_block
from acp.client.connection import ClientSideConnection
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    CreateTerminalResponse,
    DeniedOutcome,
    EnvVariable,
    FileSystemCapabilities,
    Implementation,
    PermissionOption,
    ReadTextFileResponse,
    RequestPermissionResponse,
    TerminalExitStatus,
    TerminalOutputResponse,
    ToolCallUpdate,
    WaitForTerminalExitResponse,
)

from tether import __version__
from tether.protocol.hosted import (
    AgentPermissionAnswer,
    AgentToolAnswer,
    call_id_for,
    op_call_id,
)
from tether.runner.agents.acp_calls import AgentCall, Paths, describe, diff_contents, text_of
from tether.runner.agents.acp_terminals import Exit, Terminals
from tether.runner.agents.agent_process import AgentProcess
from tether.runner.agents.codex import strip_shell
from tether.runner.agents.stdio_rpc import AgentRpcError
from tether.runner.agents.turns import Permission, Turn

__all__ = ["AcpSession", "ToolAsk"]

log = logging.getLogger(__name__)

Ask = Callable[[Turn, Permission], Awaitable[AgentPermissionAnswer]]
ToolAsk = Callable[
    [Turn, str, str, dict[str, Any], str | None], Coroutine[Any, Any, AgentToolAnswer]
]
"""(turn, call id, tool, args, covers) -> the gateway's answer to ``agent.tool``."""


class AcpSession(AgentProcess):
    """One session's ACP agent process. See the module docstring."""

    def __init__(
        self,
        *,
        agent: str,
        label: str,
        session_id: str,
        argv: list[str],
        env: dict[str, str],
        pass_fds: list[int],
        cwd: str,
        workspace_root: str,
        ask: Ask,
        tool: ToolAsk,
        cancel_call: Callable[[str], None],
        start_timeout: float,
    ) -> None:
        super().__init__(
            session_id=session_id,
            argv=argv,
            env=env,
            pass_fds=pass_fds,
            cwd=cwd,
            workspace_root=workspace_root,
            start_timeout=start_timeout,
        )
        self.agent = agent
        self.label = label
        self.ask = ask
        self.tool = tool
        self.cancel_call = cancel_call
        self.conn: ClientSideConnection | None = None
        self.fresh = False
        """The session was asked to resume a conversation the agent could not load."""
        self._calls: dict[str, AgentCall] = {}
        self._message: list[str] = []
        self._reply: str | None = None
        self.paths = Paths(workspace_root)
        self.terminals = Terminals(cancel_call)
        self._stopping = asyncio.Event()
        self._prompt: asyncio.Task[None] | None = None
        self._ops = 0

    # ---- the process ---------------------------------------------------------------

    async def open(self, thread: str | None) -> str:
        """Start the program, initialize, and open (or load) its session; return its id."""
        proc = await self.spawn()
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.conn = ClientSideConnection(_Client(self), proc.stdin, proc.stdout)
        try:
            init = await asyncio.wait_for(
                self.conn.initialize(
                    protocol_version=PROTOCOL_VERSION,
                    client_capabilities=ClientCapabilities(
                        fs=FileSystemCapabilities(read_text_file=True, write_text_file=True),
                        terminal=True,
                    ),
                    client_info=Implementation(name="tether", title="tether", version=__version__),
                ),
                self.start_timeout,
            )
            caps = init.agent_capabilities
            if thread and caps and caps.load_session:
                try:
                    await asyncio.wait_for(
                        self.conn.load_session(
                            cwd=self.workspace_root, session_id=thread, mcp_servers=[]
                        ),
                        self.start_timeout,
                    )
                    self.thread = thread
                    return thread
                except RequestError as exc:
                    log.info("the agent could not load its session", extra={"error": str(exc)})
            self.fresh = bool(thread)
            opened = await asyncio.wait_for(
                self.conn.new_session(cwd=self.workspace_root, mcp_servers=[]), self.start_timeout
            )
        except (TimeoutError, RequestError, ConnectionError, OSError, EOFError) as exc:
            why = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or "closed"
            raise AgentRpcError(
                f"{self.label} did not start: {why}; {self.stderr_text() or 'no output'}",
                data={"reason": "agent_crashed"},
            ) from None
        self.thread = opened.session_id
        return self.thread

    async def _close_transport(self) -> None:
        self.terminals.close()
        if self._prompt is not None:
            self._prompt.cancel()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 2.0)

    # ---- turns ---------------------------------------------------------------------

    async def start_turn(self, turn: Turn, text: str) -> None:
        assert self.conn is not None
        assert self.thread is not None
        self.turn = turn
        self.turn_ended_at = 0.0
        self._calls.clear()
        self._message.clear()
        self._reply = None
        self._stopping.clear()
        if self.fresh:
            self.fresh = False
            turn.emit(
                "agent.status",
                {
                    "text": f"{self.label} cannot resume an earlier conversation, so this one "
                    "starts fresh"
                },
            )
        self._prompt = asyncio.get_running_loop().create_task(
            self._run(turn, text), name=f"{self.agent}:prompt"
        )

    async def _run(self, turn: Turn, text: str) -> None:
        assert self.conn is not None
        assert self.thread is not None
        try:
            done = await self.conn.prompt(session_id=self.thread, prompt=[text_block(text)])
        except RequestError as exc:
            self._flush(turn)
            turn.end("failed", output=self._reply, reason="agent_error", message=str(exc))
        except (ConnectionError, OSError, EOFError):
            return  # the process is gone: the host ends the turn with agent_crashed
        else:
            self._flush(turn)
            if done.usage is not None:
                turn.emit(
                    "agent.usage",
                    {
                        "model": None,
                        "input_tokens": done.usage.input_tokens,
                        "output_tokens": done.usage.output_tokens,
                        "cached_tokens": done.usage.cached_read_tokens,
                    },
                )
            stop = done.stop_reason
            if stop == "end_turn":
                turn.end("completed", output=self._reply)
            elif stop == "cancelled" or self._stopping.is_set():
                turn.end(
                    "interrupted", output=self._reply, reason="interrupted", message="interrupted"
                )
            else:
                turn.end(
                    "failed",
                    output=self._reply,
                    reason="agent_error",
                    message=f"{self.label} stopped: {stop}",
                )
        self.ended_turn(turn)

    async def steer(self, text: str) -> None:
        raise AgentRpcError(f"{self.label} does not take input during a turn")

    async def interrupt(self) -> None:
        """``session/cancel``; what it still asks is answered ``cancelled``."""
        self._stopping.set()
        if self.conn is not None and self.thread is not None:
            with contextlib.suppress(Exception):
                await self.conn.cancel(session_id=self.thread)

    # ---- what the agent says -------------------------------------------------------

    def _mine(self, session_id: str) -> Turn | None:
        turn = self.turn
        if turn is None or turn.ended or session_id != self.thread:
            return None
        return turn

    def _flush(self, turn: Turn) -> None:
        """The agent's text since the last tool call is one message."""
        text = "".join(self._message).strip()
        self._message.clear()
        if text:
            self._reply = text
            turn.emit("agent.message", {"text": text})

    def updated(self, session_id: str, data: dict[str, Any]) -> None:
        turn = self._mine(session_id)
        if turn is None:
            return  # a loaded session's history, or a turn that ended
        kind = data.get("sessionUpdate")
        if kind == "agent_message_chunk":
            content = data.get("content") or {}
            text = content.get("text") if content.get("type") == "text" else None
            if isinstance(text, str) and text:
                self._message.append(text)
                turn.emit("agent.delta", {"text": text})
        elif kind in ("tool_call", "tool_call_update"):
            self._flush(turn)
            self._tool_update(turn, data)
        elif kind == "plan":
            steps = [
                f"{e.get('status', '')}: {e.get('content', '')}" for e in data.get("entries") or []
            ]
            turn.emit("agent.status", {"text": "plan: " + "; ".join(steps)})

    def _known(self, data: dict[str, Any]) -> AgentCall:
        """What we know of the tool call ``data`` updates: its fields merged over every
        update (a later one that leaves ``rawInput`` out keeps the earlier one), fixed once
        tether has been asked about it."""
        ident = str(data.get("toolCallId") or "")
        known = self._calls.setdefault(ident, AgentCall())
        if known.asked:
            return known
        fields = ("kind", "title", "rawInput", "locations", "content")
        known.seen.update({k: data[k] for k in fields if data.get(k) not in (None, [], {})})
        if any(k in known.seen for k in ("kind", "rawInput", "locations", "content")):
            known.tool, known.args = describe(known.seen, self.paths)
            known.contents = diff_contents(known.seen, self.paths)
        return known

    def _tool_update(self, turn: Turn, data: dict[str, Any]) -> None:
        known = self._known(data)
        ident = str(data.get("toolCallId") or "")
        status = data.get("status")
        if status not in ("completed", "failed") or known.finished:
            return
        known.finished = True
        if known.declined:
            return  # tether refused it: the gateway recorded that
        call_id = self._announce(turn, ident, known)
        output = text_of(data.get("content")) or text_of(data.get("rawOutput"))
        if status == "completed":
            result = {"output": output[-65536:], "ran_by": self.agent}
            turn.emit(
                "tool.call.succeeded", {"call_id": call_id, "duration": 0.0, "result": result}
            )
        else:
            turn.emit(
                "tool.call.failed",
                {
                    "call_id": call_id,
                    "code": "tool_failed",
                    "message": f"{self.label}: {output[:2000] or 'failed'}",
                },
            )

    def _announce(self, turn: Turn, ident: str, known: AgentCall) -> str:
        """Record a call the agent ran without asking (tether did not decide it), once."""
        call_id = call_id_for(turn.run_id, ident)
        if not known.asked and not known.announced:
            known.announced = True
            turn.emit(
                "tool.call.requested",
                {
                    "call_id": call_id,
                    "runner": turn.runner,
                    "tool": known.tool,
                    "args": known.args,
                    "workspace": turn.workspace,
                },
            )
            turn.emit(
                "tool.call.decided",
                {
                    "call_id": call_id,
                    "decision": "allow",
                    "by": "agent_sandbox",
                    "rule": f"{self.label} ran it without asking, inside the runner's sandbox",
                },
            )
        return call_id

    # ---- what the agent asks -------------------------------------------------------

    async def permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption]
    ) -> RequestPermissionResponse:
        turn = self._mine(session_id)
        once = _option(options, "allow_once")
        reject = _option(options, "reject_once") or _option(options, "reject_always")
        if turn is None or self._stopping.is_set():
            return _cancelled()
        data = tool_call.model_dump(mode="json", by_alias=True, exclude_none=True)
        ident = str(data.get("toolCallId") or "")
        known = self._known(data)
        known.asked = True
        if once is None:
            return _refused(known, reject, "it offered no 'allow once' option")
        call_id = call_id_for(turn.run_id, ident)
        tool, args = known.tool, known.args
        if tool == "shell" and not args.get("command"):
            # nothing to judge but its title: refused, never asked about words
            return _refused(known, reject, "it asked to run a command it did not name")
        if tool == "shell":
            permission = Permission(kind="command", call_id=call_id, tool="shell", args=args)
        elif tool == "apply_patch":
            permission = Permission(
                kind="file_change", call_id=call_id, tool="apply_patch", args=args
            )
        else:
            permission = Permission(
                kind="permissions",
                call_id=call_id,
                tool="agent_permissions",
                args={"permissions": args},
                reason=str(data.get("title") or "")[:4000],
            )
        asking = asyncio.ensure_future(self.ask(turn, permission))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({asking, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not asking.done():
            asking.cancel()
            known.declined = True
            return _cancelled()
        answer = asking.result()
        if answer.decision == "accept":
            known.granted = True
            return _selected(once)
        known.declined = True
        if answer.decision == "cancel" or reject is None:
            return _cancelled()
        return _selected(reject)

    def _covers(self, tool: str, args: dict[str, Any]) -> str | None:
        """The granted, unfinished permission an fs write or a command carries out: the
        same path (with the very content its diff showed, if it showed one), or the very
        command line."""
        turn = self.turn
        if turn is None:
            return None
        for ident, known in reversed(self._calls.items()):
            if not known.granted or known.finished:
                continue
            path = args.get("path")
            same_file = tool == "write_file" and known.tool == "apply_patch"
            shown = known.contents.get(str(path), args.get("content"))
            if (
                same_file
                and path in (known.args.get("paths") or [])
                and shown == args.get("content")
            ):
                return call_id_for(turn.run_id, ident)
            same_command = tool == "shell" and known.tool == "shell"
            if same_command and args.get("command") == known.args.get("command"):
                return call_id_for(turn.run_id, ident)
        return None

    def _op(
        self, session_id: str, tool: str, args: dict[str, Any]
    ) -> tuple[str, Coroutine[Any, Any, AgentToolAnswer]]:
        """The next ``agent.tool`` operation of the running turn: its call id and the
        request, not yet awaited."""
        turn = self._mine(session_id)
        if turn is None:
            raise RequestError(-32603, "no turn is running")
        self._ops += 1
        op = f"op{self._ops}"
        return op_call_id(turn.run_id, op), self.tool(
            turn, op, tool, args, self._covers(tool, args)
        )

    async def _tool(self, session_id: str, tool: str, args: dict[str, Any]) -> AgentToolAnswer:
        _call_id, request = self._op(session_id, tool, args)
        return await request

    async def read(self, session_id: str, path: str, line: int | None, limit: int | None) -> str:
        args: dict[str, Any] = {"path": self.paths.rel(path)}
        if line:
            args["offset"] = max(0, line - 1)
        if limit:
            args["limit"] = max(1, min(limit, 20_000))
        answer = await self._tool(session_id, "read_file", args)
        if answer.ok:
            result = answer.result if isinstance(answer.result, dict) else {}
            return str(result.get("content") or "")
        if answer.reason == "not_found":
            return ""  # Gemini reads a file before writing it, and expects this
        raise RequestError(-32603, answer.message or answer.code)

    async def write(self, session_id: str, path: str, content: str) -> None:
        answer = await self._tool(
            session_id, "write_file", {"path": self.paths.rel(path), "content": content}
        )
        if not answer.ok:
            raise RequestError(-32603, answer.message or answer.code)

    async def terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None,
        env: list[EnvVariable] | None,
        cwd: str | None,
        limit: int | None,
    ) -> str:
        line = strip_shell(shlex.join([command, *args]) if args else command)
        if env:
            line = " ".join(f"{e.name}={shlex.quote(e.value)}" for e in env) + " " + line
        shell = {"command": line, "cwd": self.paths.rel(cwd or self.workspace_root)}
        call_id, request = self._op(session_id, "shell", shell)
        task: asyncio.Task[AgentToolAnswer] = asyncio.ensure_future(request)
        return self.terminals.add(task, call_id, limit)


class _Client:
    """The SDK's ``Client``: what an ACP agent may ask of us."""

    def __init__(self, session: AcpSession) -> None:
        self.s = session

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        return await self.s.permission(session_id, tool_call, options)

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        if isinstance(update, dict):
            self.s.updated(session_id, update)
        elif hasattr(update, "model_dump"):
            self.s.updated(
                session_id, update.model_dump(mode="json", by_alias=True, exclude_none=True)
            )

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **_: Any,
    ) -> ReadTextFileResponse:
        return ReadTextFileResponse(content=await self.s.read(session_id, path, line, limit))

    async def write_text_file(self, session_id: str, path: str, content: str, **_: Any) -> None:
        await self.s.write(session_id, path, content)

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: list[EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **_: Any,
    ) -> CreateTerminalResponse:
        terminal_id = await self.s.terminal(session_id, command, args, env, cwd, output_byte_limit)
        return CreateTerminalResponse(terminal_id=terminal_id)

    async def terminal_output(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> TerminalOutputResponse:
        text, truncated, ended = self.s.terminals.output(_known_terminal(self.s, terminal_id))
        return TerminalOutputResponse(output=text, truncated=truncated, exit_status=_status(ended))

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> WaitForTerminalExitResponse:
        ended = await self.s.terminals.wait(_known_terminal(self.s, terminal_id))
        return WaitForTerminalExitResponse(exit_code=ended.exit_code, signal=ended.signal)

    async def kill_terminal(self, session_id: str, terminal_id: str, **_: Any) -> None:
        self.s.terminals.kill(_known_terminal(self.s, terminal_id))

    async def release_terminal(self, session_id: str, terminal_id: str, **_: Any) -> None:
        self.s.terminals.release(_known_terminal(self.s, terminal_id))

    async def create_elicitation(self, message: str, mode: Any, **_: Any) -> Any:
        raise RequestError.method_not_found("elicitation/create")

    async def complete_elicitation(self, elicitation_id: str, **_: Any) -> None:
        return None

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def on_connect(self, conn: Any) -> None:
        return None


def _option(options: list[PermissionOption], kind: str) -> PermissionOption | None:
    return next((o for o in options if o.kind == kind), None)


def _selected(option: PermissionOption) -> RequestPermissionResponse:
    return RequestPermissionResponse(
        outcome=AllowedOutcome(outcome="selected", option_id=option.option_id)
    )


def _cancelled() -> RequestPermissionResponse:
    return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))


def _refused(
    known: AgentCall, reject: PermissionOption | None, why: str
) -> RequestPermissionResponse:
    """Refused without asking anyone: the agent's reject option (else cancelled)."""
    log.warning("! refusing an ACP agent's request: %s", why)
    known.declined = True
    return _selected(reject) if reject else _cancelled()


def _known_terminal(session: AcpSession, terminal_id: str) -> str:
    if not session.terminals.has(terminal_id):
        raise RequestError(-32602, f"no terminal {terminal_id!r}")
    return terminal_id


def _status(ended: Exit | None) -> TerminalExitStatus | None:
    return (
        None
        if ended is None
        else TerminalExitStatus(exit_code=ended.exit_code, signal=ended.signal)
    )
