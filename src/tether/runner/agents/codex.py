"""Codex as a hosted agent: ``codex app-server`` over stdio, one process per session.

:class:`CodexSession` starts the program (inside the runner's sandbox: see
:mod:`tether.runner.agents.launch`), does ``initialize``/``initialized``, starts or resumes
the session's thread, and runs turns with ``turn/start``. What Codex says becomes
catalogue events of the turn (:class:`~tether.runner.agents.turns.Turn`):

- ``item/agentMessage/delta`` -> ``agent.delta``; a completed ``agentMessage`` ->
  ``agent.message``; ``thread/tokenUsage/updated`` -> ``agent.usage``; ``turn/plan/updated``
  and ``error`` -> ``agent.status``;
- a command or file change -> ``tool.call.*`` (call ids derived from the run and Codex's
  item id). One that Codex ran without asking (inside its own read-only sandbox) is
  recorded as decided by ``agent_sandbox``; one it asked about was decided by tether;
- ``item/commandExecution/requestApproval``, ``item/fileChange/requestApproval``,
  ``item/permissions/requestApproval`` and ``item/tool/requestUserInput`` ask the gateway
  (policy, then a person) and the answer goes back as ``accept`` (always once),
  ``decline`` or ``cancel``; ``serverRequest/resolved`` for a request still being asked
  (Codex closed it itself) withdraws it, and the gateway closes the person's request.

The turn's reply is read from the thread's history when it completes (never stitched
from deltas). How Codex is set up (sandbox and approvals) follows ``agents.codex.sandbox``:
``codex`` runs its read-only sandbox with ``on-request`` approvals; ``external`` tells
it the sandbox is ours and asks for every command (``untrusted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from tether import __version__
from tether.errors import ConnectionClosed, RequestTimeout, TetherError
from tether.protocol.hosted import AgentPermissionAnswer, call_id_for
from tether.runner.agents.agent_process import AgentProcess
from tether.runner.agents.stdio_rpc import AgentRpcError, StdioRpc
from tether.runner.agents.turns import Permission, Turn

__all__ = ["CodexSession", "call_id_for", "codex_overrides", "strip_shell"]

log = logging.getLogger(__name__)

SAFE_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("check_for_update_on_startup", "false"),
    ("web_search", '"disabled"'),
    ("analytics.enabled", "false"),
    ("features.plugins", "false"),
    ("features.remote_plugin", "false"),
    ("features.apps", "false"),
    ("features.image_generation", "false"),
    ("features.goals", "false"),
    ("agents.enabled", "false"),
)
"""Codex's own network features off: passed after the configured settings, so they win."""

Ask = Callable[[Turn, Permission], Awaitable[AgentPermissionAnswer]]


DEFAULTS: tuple[tuple[str, str], ...] = (("features.default_mode_request_user_input", "true"),)
"""Passed before the configured settings: Codex may ask its people questions."""


ACP_SAFE_OVERRIDES = tuple(kv for kv in SAFE_OVERRIDES if kv[0] != "agents.enabled")
"""The same for ``codex-acp`` 0.16, whose older Codex config has no ``agents.enabled``
(and refuses to start with it)."""


def codex_overrides(
    settings: dict[str, Any], safe: tuple[tuple[str, str], ...] = SAFE_OVERRIDES
) -> list[str]:
    """``-c key=value`` arguments: our defaults, the configured settings (values as TOML),
    then our safety settings (``safe``)."""
    args: list[str] = []
    for key, value in DEFAULTS:
        args += ["-c", f"{key}={value}"]
    for key, value in settings.items():
        args += ["-c", f"{key}={_toml(value)}"]
    for key, value in safe:
        args += ["-c", f"{key}={value}"]
    return args


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"cannot pass {type(value).__name__} to codex as TOML")


def strip_shell(command: str) -> str:
    """The command line inside a ``/bin/bash -c '…'`` (or ``bash -lc``) wrapper."""
    try:
        parts = shlex.split(command)
    except ValueError:
        return command
    if (
        len(parts) == 3
        and (parts[0] in ("bash", "sh", "zsh") or parts[0].endswith(("/bash", "/sh", "/zsh")))
        and parts[1] in ("-c", "-lc")
    ):
        return parts[2]
    return command


class CodexSession(AgentProcess):
    """One session's ``codex app-server`` process and thread. See the module docstring."""

    agent = "codex"

    def __init__(
        self,
        *,
        session_id: str,
        argv: list[str],
        env: dict[str, str],
        pass_fds: list[int],
        cwd: str,
        workspace_root: str,
        sandbox: str,
        ask: Ask,
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
        self.sandbox = sandbox
        self.ask = ask
        self.rpc: StdioRpc | None = None
        self.turn_id: str | None = None
        self._items: dict[str, dict[str, Any]] = {}
        """Item id -> what we know of it (kind, command, paths, asked, announced)."""

    # ---- the process ---------------------------------------------------------------

    async def open(self, thread: str | None) -> str:
        """Start the program and attach the thread (resumed when known); return its id."""
        proc = await self.spawn()
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.rpc = StdioRpc(
            proc.stdout, proc.stdin, on_notify=self._notified, on_request=self._asked
        )
        self.rpc.start()
        try:
            await self.rpc.call(
                "initialize",
                {"clientInfo": {"name": "tether", "title": "tether", "version": __version__}},
                timeout=self.start_timeout,
            )
            self.rpc.notify("initialized")
            if thread:
                result = await self.rpc.call(
                    "thread/resume", {"threadId": thread}, timeout=self.start_timeout
                )
            else:
                result = await self.rpc.call(
                    "thread/start", {"cwd": self.workspace_root}, timeout=self.start_timeout
                )
        except (ConnectionClosed, RequestTimeout) as exc:
            raise AgentRpcError(
                f"codex did not start: {exc.message}; {self.stderr_text() or 'no output'}",
                data={"reason": "agent_crashed"},
            ) from None
        self.thread = str(((result or {}).get("thread") or {}).get("id") or thread or "")
        return self.thread

    async def _transport_closed(self) -> None:
        if self.rpc is not None:
            await self.rpc.closed.wait()

    async def _close_transport(self) -> None:
        if self.rpc is not None:
            await self.rpc.aclose()

    # ---- turns ---------------------------------------------------------------------

    def _policies(self) -> dict[str, Any]:
        if self.sandbox == "codex":
            return {"approvalPolicy": "on-request", "sandboxPolicy": {"type": "readOnly"}}
        return {
            "approvalPolicy": "untrusted",
            "sandboxPolicy": {"type": "externalSandbox", "networkAccess": "restricted"},
        }

    async def start_turn(self, turn: Turn, text: str) -> None:
        assert self.rpc is not None
        assert self.thread is not None
        self.turn = turn
        self.turn_ended_at = 0.0
        self._items.clear()
        result = await self.rpc.call(
            "turn/start",
            {
                "threadId": self.thread,
                "input": [{"type": "text", "text": text}],
                "cwd": self.workspace_root,
                **self._policies(),
            },
            timeout=self.start_timeout,
        )
        self.turn_id = str(((result or {}).get("turn") or {}).get("id") or "")

    async def steer(self, text: str) -> None:
        if self.rpc is None or self.thread is None or not self.turn_id:
            raise AgentRpcError("no turn is running")
        await self.rpc.call(
            "turn/steer",
            {
                "threadId": self.thread,
                "expectedTurnId": self.turn_id,
                "input": [{"type": "text", "text": text}],
            },
            timeout=30.0,
        )

    async def interrupt(self) -> None:
        if self.rpc is None or self.thread is None or not self.turn_id:
            return
        await self.rpc.call(
            "turn/interrupt", {"threadId": self.thread, "turnId": self.turn_id}, timeout=10.0
        )

    async def _final_reply(self, turn_id: str) -> str | None:
        """The turn's last agent message, from the thread's history."""
        assert self.rpc is not None
        result = await self.rpc.call(
            "thread/items/list",
            {"threadId": self.thread, "turnId": turn_id, "sortDirection": "desc", "limit": 50},
            timeout=30.0,
        )
        for entry in (result or {}).get("data") or []:
            item = entry.get("item") or {}
            if item.get("type") == "agentMessage" and item.get("text"):
                return str(item["text"])
        return None

    # ---- what Codex says -----------------------------------------------------------

    def _mine(self, params: dict[str, Any]) -> Turn | None:
        turn = self.turn
        if turn is None or turn.ended:
            return None
        turn_id = params.get("turnId")
        if turn_id is not None and self.turn_id and turn_id != self.turn_id:
            return None
        return turn

    def _notified(self, method: str, params: dict[str, Any]) -> None:
        if method == "turn/completed":
            self._completed(params)
            return
        if method == "serverRequest/resolved":
            if self.rpc is not None and self.rpc.withdraw(params.get("requestId")):
                log.info("codex withdrew a request", extra={"request": params.get("requestId")})
            return
        turn = self._mine(params)
        if turn is None:
            return
        if method == "item/agentMessage/delta":
            delta = params.get("delta")
            if isinstance(delta, str) and delta:
                turn.emit("agent.delta", {"text": delta})
        elif method == "item/started":
            self._started(params.get("item") or {})
        elif method == "item/completed":
            self._item_completed(turn, params.get("item") or {})
        elif method == "item/commandExecution/outputDelta":
            self._output(turn, str(params.get("itemId") or ""), params.get("delta"))
        elif method == "thread/tokenUsage/updated":
            last = (params.get("tokenUsage") or {}).get("last") or {}
            turn.emit(
                "agent.usage",
                {
                    "model": None,
                    "input_tokens": last.get("inputTokens"),
                    "output_tokens": last.get("outputTokens"),
                    "cached_tokens": last.get("cachedInputTokens"),
                },
            )
        elif method == "turn/plan/updated":
            steps = [
                f"{s.get('status', '')}: {s.get('step', '')}" for s in params.get("plan") or []
            ]
            turn.emit("agent.status", {"text": "plan: " + "; ".join(steps)})
        elif method == "error":
            error = params.get("error") or {}
            text = error.get("message") if isinstance(error, dict) else None
            turn.emit("agent.status", {"text": f"codex: {text or 'error'}"})
        else:
            log.debug("codex notification not mapped", extra={"method": method})

    def _started(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        item_id = str(item.get("id") or "")
        if kind == "commandExecution":
            self._items[item_id] = {
                "tool": "shell",
                "args": {
                    "command": strip_shell(str(item.get("command") or "")),
                    "cwd": self._relative(str(item.get("cwd") or "")),
                },
            }
        elif kind == "fileChange":
            changes = item.get("changes") or []
            self._items[item_id] = {
                "tool": "apply_patch",
                "args": {
                    "paths": [self._relative(str(c.get("path") or "")) for c in changes],
                    "diff": "\n".join(str(c.get("diff") or "") for c in changes)[:100_000],
                },
            }

    def _relative(self, path: str) -> str:
        root = self.workspace_root.rstrip("/")
        if path == root:
            return "."
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
        return path

    def _announce(self, turn: Turn, item_id: str) -> str:
        """Record a call Codex ran without asking (its own sandbox decided it), once."""
        known = self._items.setdefault(item_id, {"tool": "shell", "args": {}})
        call_id = call_id_for(turn.run_id, item_id)
        if not known.get("asked") and not known.get("announced"):
            known["announced"] = True
            turn.emit(
                "tool.call.requested",
                {
                    "call_id": call_id,
                    "runner": turn.runner,
                    "tool": known["tool"],
                    "args": known["args"],
                    "workspace": turn.workspace,
                },
            )
            rule = (
                "codex ran it in its read-only sandbox without asking"
                if self.sandbox == "codex"
                else "codex ran it without asking (a command it knows to be safe)"
            )
            turn.emit(
                "tool.call.decided",
                {"call_id": call_id, "decision": "allow", "by": "agent_sandbox", "rule": rule},
            )
        return call_id

    def _output(self, turn: Turn, item_id: str, delta: Any) -> None:
        if not isinstance(delta, str) or not delta:
            return
        call_id = self._announce(turn, item_id)
        turn.emit("tool.call.output", {"call_id": call_id, "stream": "stdout", "text": delta})

    def _item_completed(self, turn: Turn, item: dict[str, Any]) -> None:
        kind = item.get("type")
        item_id = str(item.get("id") or "")
        if kind == "agentMessage":
            text = item.get("text")
            if isinstance(text, str) and text:
                turn.emit("agent.message", {"text": text})
            return
        if kind not in ("commandExecution", "fileChange"):
            return
        if item_id not in self._items:
            self._started(item)
        known = self._items[item_id]
        status = item.get("status")
        if status == "declined" or known.get("declined"):
            return  # tether decided it: the gateway recorded the refusal
        call_id = self._announce(turn, item_id)
        duration = float(item.get("durationMs") or 0) / 1000
        if kind == "commandExecution":
            if status == "completed" or item.get("exitCode") is not None:
                result = {
                    "exit_code": item.get("exitCode"),
                    "output": str(item.get("aggregatedOutput") or "")[-65536:],
                    "ran_by": "codex",
                }
                turn.emit(
                    "tool.call.succeeded",
                    {"call_id": call_id, "duration": duration, "result": result},
                )
            else:
                turn.emit(
                    "tool.call.failed",
                    {"call_id": call_id, "code": "tool_failed", "message": f"codex: {status}"},
                )
        elif status == "completed":
            changes = [
                {"path": self._relative(str(c.get("path") or "")), "kind": c.get("kind")}
                for c in item.get("changes") or []
            ]
            turn.emit(
                "tool.call.succeeded",
                {"call_id": call_id, "duration": duration, "result": {"changes": changes}},
            )
        else:
            turn.emit(
                "tool.call.failed",
                {"call_id": call_id, "code": "tool_failed", "message": f"codex: {status}"},
            )

    def _completed(self, params: dict[str, Any]) -> None:
        turn = self.turn
        info = params.get("turn") or {}
        if turn is None or turn.ended or (self.turn_id and info.get("id") != self.turn_id):
            return
        asyncio.get_running_loop().create_task(
            self._finish(turn, str(info.get("id") or ""), info), name="codex:finish"
        )

    async def _finish(self, turn: Turn, turn_id: str, info: dict[str, Any]) -> None:
        status = str(info.get("status") or "failed")
        output = None
        with contextlib.suppress(TetherError):
            output = await self._final_reply(turn_id)
        if status == "completed":
            turn.end("completed", output=output)
        elif status == "interrupted":
            turn.end("interrupted", output=output, reason="interrupted", message="interrupted")
        else:
            error = info.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else None
            turn.end("failed", output=output, reason="agent_error", message=str(message or status))
        if self.turn is turn:
            self.turn_id = None
        self.ended_turn(turn)

    # ---- what Codex asks -----------------------------------------------------------

    async def _asked(self, method: str, params: dict[str, Any]) -> Any:
        turn = self._mine(params)
        if turn is None:
            if method.endswith("requestApproval"):
                return {"decision": "decline"}
            raise AgentRpcError(f"no turn is running for {method}")
        item_id = str(params.get("itemId") or "")
        call_id = call_id_for(turn.run_id, item_id)
        known = self._items.setdefault(item_id, {"tool": "shell", "args": {}})
        known["asked"] = True
        if method == "item/commandExecution/requestApproval":
            # policy judges the command line that would run, never Codex's summary of it
            command = str(params.get("command") or "")
            args = known["args"] or {}
            permission = Permission(
                kind="command",
                call_id=call_id,
                tool="shell",
                args={
                    "command": strip_shell(command) if command else str(args.get("command", "")),
                    "cwd": self._relative(str(params.get("cwd") or self.workspace_root)),
                },
                reason=str(params.get("reason") or ""),
            )
        elif method == "item/fileChange/requestApproval":
            permission = Permission(
                kind="file_change",
                call_id=call_id,
                tool="apply_patch",
                args=known["args"] if known.get("tool") == "apply_patch" else {"paths": []},
                reason=str(params.get("reason") or ""),
            )
        elif method == "item/permissions/requestApproval":
            permission = Permission(
                kind="permissions",
                call_id=call_id,
                tool="agent_permissions",
                args={"permissions": params.get("permissions") or {}},
                reason=str(params.get("reason") or ""),
            )
        elif method == "item/tool/requestUserInput":
            return await self._questions(turn, call_id, params)
        else:
            raise AgentRpcError(f"tether does not answer {method}")
        answer = await self.ask(turn, permission)
        if answer.decision != "accept":
            known["declined"] = True
        if method == "item/permissions/requestApproval":
            granted = params.get("permissions") or {} if answer.decision == "accept" else {}
            return {"permissions": granted, "scope": "turn"}
        return {"decision": answer.decision}

    async def _questions(self, turn: Turn, call_id: str, params: dict[str, Any]) -> Any:
        answers: dict[str, Any] = {}
        for index, question in enumerate(params.get("questions") or []):
            options = [str(o.get("label") or "") for o in question.get("options") or []]
            options = [o for o in options if o][:20]
            text = str(question.get("question") or question.get("header") or "?")
            if question.get("isOther") and options:
                # any answer is fine: offer the options in the text, not as the only choices
                text = f"{text} ({', '.join(options)}, or something else)"
                options = []
            answer = await self.ask(
                turn,
                Permission(
                    kind="question",
                    call_id=f"{call_id}q{index}",
                    question=text,
                    choices=options,
                ),
            )
            reply = answer.answer if answer.decision == "accept" else None
            answers[str(question.get("id") or index)] = {"answers": [reply] if reply else []}
        return {"answers": answers}
