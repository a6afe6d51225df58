"""What ``tether chat`` shows for a run's events: lines for the scrollback, the text still
streaming, and the requests waiting for an answer. Pure: no terminal, no I/O.

Everything an agent, a tool or a chat user wrote is shown as text: control characters
(terminal escapes among them) and bidirectional overrides are removed before it is shown,
so no output can move the cursor, retitle the terminal or fake a prompt.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

from tether.gateway.phrases import describe_plan, explain
from tether.protocol.events import (
    AgentDelta,
    AgentMessage,
    AgentStatus,
    ApprovalRequested,
    ApprovalResolved,
    QuestionAnswered,
    QuestionAsked,
    RunCancelled,
    RunCancelRequested,
    RunEvent,
    RunExpired,
    RunFailed,
    RunQueued,
    RunRecovered,
    RunRunning,
    RunStarted,
    RunSucceeded,
    RunWaiting,
    SteeringDropped,
    SteeringReceived,
    SteeringRequeued,
    ToolCallDecided,
    ToolCallFailed,
    ToolCallOutput,
    ToolCallRequested,
    ToolCallSucceeded,
    decode_payload,
)
from tether.protocol.runs import EventInfo

__all__ = ["FOLD_HEAD", "FOLD_TAIL", "Shown", "View", "Waiting", "clean", "fold"]

Style = Literal["", "agent", "you", "tool", "ok", "err", "dim", "ask", "other"]

_UNSAFE = re.compile(
    # whole escape sequences first, so none of their parameters are left behind:
    "\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?"  # OSC (a title, a hyperlink, the clipboard)
    "|(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (cursor, screen, colours)
    "|\x1b[P^_X][^\x1b]*(?:\x1b\\\\)?"  # DCS, PM, APC, SOS strings
    "|\x1b[ -/]*[0-~]?"  # any other escape
    "|[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
FOLD_HEAD = 12
FOLD_TAIL = 4
"""A tool's output longer than FOLD_HEAD + FOLD_TAIL + 1 lines is shown folded."""
LIVE_LINES = 8
"""Lines of streaming text (or a running tool's output) shown above the prompt."""


def clean(text: str) -> str:
    """``text`` safe for a terminal: escapes, other control characters (not newline and
    tab) and bidirectional overrides removed."""
    return _UNSAFE.sub("", text.replace("\r\n", "\n"))


def fold(text: str, hint: str) -> str:
    """Long output as its head, a line saying how much was left out and ``hint``, its tail."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) <= FOLD_HEAD + FOLD_TAIL + 1:
        return "\n".join(lines)
    hidden = len(lines) - FOLD_HEAD - FOLD_TAIL
    return "\n".join([*lines[:FOLD_HEAD], f"… {hidden} more lines ({hint}) …", *lines[-FOLD_TAIL:]])


@dataclass(frozen=True)
class Shown:
    """A block for the scrollback."""

    text: str
    style: Style = ""
    markdown: bool = False
    """An agent's message: rendered as Markdown where the terminal can."""


@dataclass
class Waiting:
    """A request of a run that waits for an answer here."""

    request: str
    handle: str
    run_id: str
    kind: Literal["approval", "question"]
    choices: list[str] = field(default_factory=list)
    expires_at: float = 0.0


@dataclass
class _Call:
    tool: str
    what: str
    output: list[str] = field(default_factory=list)
    size: int = 0


_OUTPUT_KEPT = 256 * 1024
"""Bytes of one call's streamed output kept for showing (the ledger has all of it)."""


@dataclass
class View:
    """Feed it a session's events in order; read what to show."""

    lang: Literal["en", "zh"] = "en"
    names: dict[str, str] = field(default_factory=dict)
    """Principal id -> a name to show (who decided)."""
    active: str | None = None
    """The run that is running or waiting, if one is."""
    state: str = "idle"
    activity: str = ""
    """What the agent says it is doing now."""
    waiting: dict[str, Waiting] = field(default_factory=dict)
    """Handle -> request, oldest first."""
    mine: set[str] = field(default_factory=set)
    """Inputs sent from this terminal and not yet seen queued (not echoed again)."""
    _streams: dict[str, list[str]] = field(default_factory=dict)
    _calls: dict[str, _Call] = field(default_factory=dict)
    _said: dict[str, str] = field(default_factory=dict)
    _requeued: set[str] = field(default_factory=set)
    _started: dict[str, float] = field(default_factory=dict)

    # ---- reading -----------------------------------------------------------------------

    def live(self) -> str:
        """The text still being written, or the output of the call running now."""
        if self.active is None:
            return ""
        stream = "".join(self._streams.get(self.active, ()))
        if stream:
            return "\n".join(stream.rstrip("\n").split("\n")[-LIVE_LINES:])
        running = list(self._calls.values())
        if running:
            call = running[-1]
            tail = (
                "".join(call.output).rstrip("\n").split("\n")[-LIVE_LINES:] if call.output else []
            )
            return "\n".join([f"⚙ {call.tool} {call.what} …", *tail])
        return ""

    def first_waiting(self) -> Waiting | None:
        return next(iter(self.waiting.values()), None)

    def _who(self, principal: str | None) -> str:
        if principal is None:
            return "tether"
        return self.names.get(principal, principal)

    # ---- feeding -----------------------------------------------------------------------

    def feed(self, event: EventInfo) -> list[Shown]:
        payload = decode_payload(event.kind, bytes(event.payload))
        if payload is None:
            return []
        return self._show(event.run_id, event.created_at, payload)

    def _show(self, run_id: str, at: float, p: RunEvent) -> list[Shown]:
        if isinstance(p, RunQueued):
            self._started[run_id] = at
            if self.active is None:
                self.state = "queued"
            if p.input in self.mine or run_id in self._requeued:
                self.mine.discard(p.input)
                self._requeued.discard(run_id)
                return []
            return [Shown(f"› {clean(p.input)}", "other")]
        if isinstance(p, RunStarted | RunRecovered | RunRunning):
            self.active, self.state = run_id, "running"
            return (
                [Shown("(resumed after a restart)", "dim")] if isinstance(p, RunRecovered) else []
            )
        if isinstance(p, RunWaiting):
            self.active, self.state = run_id, "waiting"
            return []
        if isinstance(p, AgentStatus):
            self.activity = clean(p.text)[:80]
            return []
        if isinstance(p, AgentDelta):
            self._streams.setdefault(run_id, []).append(clean(p.text))
            return []
        if isinstance(p, AgentMessage):
            self._streams.pop(run_id, None)
            text = clean(p.text)
            self._said[run_id] = text
            return [Shown(text, "agent", markdown=True)] if text.strip() else []
        if isinstance(p, SteeringReceived):
            if p.text in self.mine:
                self.mine.discard(p.text)
                return []
            return [Shown(f"› {clean(p.text)}", "other")]
        if isinstance(p, SteeringRequeued):
            self._requeued.add(p.run_id)  # shown when it was received
            return []
        if isinstance(p, SteeringDropped):
            return [Shown(f"not taken ({p.reason}): {clean(p.text)}", "dim")]
        if isinstance(p, RunCancelRequested):
            self.state = "stopping"
            return [Shown("stopping the run …", "dim")]
        if isinstance(p, ToolCallRequested | ToolCallOutput | ToolCallDecided):
            return self._call(p)
        if isinstance(p, ToolCallSucceeded | ToolCallFailed):
            return self._call_ended(run_id, p)
        if isinstance(p, ApprovalRequested | QuestionAsked | ApprovalResolved | QuestionAnswered):
            return self._request(run_id, p)
        if isinstance(p, RunSucceeded | RunFailed | RunCancelled | RunExpired):
            return self._ended(run_id, at, p)
        return []

    def _call(self, p: ToolCallRequested | ToolCallOutput | ToolCallDecided) -> list[Shown]:
        if isinstance(p, ToolCallRequested):
            what = clean(_what(p.tool, p.args))
            self._calls[p.call_id] = _Call(tool=p.tool, what=what)
            return [Shown(f"⚙ {p.tool} {what}", "tool")]
        if isinstance(p, ToolCallOutput):
            call = self._calls.get(p.call_id)
            if call is not None and call.size < _OUTPUT_KEPT:
                text = clean(p.text)[: _OUTPUT_KEPT - call.size]
                call.output.append(text)
                call.size += len(text)
            return []
        if p.by != "rule" and p.by != "mode":
            return []  # a person's decision is shown with the request
        return [Shown(f"  {p.decision}ed: {clean(p.rule)}", "dim")] if p.decision == "deny" else []

    def _call_ended(self, run_id: str, p: ToolCallSucceeded | ToolCallFailed) -> list[Shown]:
        call = self._calls.pop(p.call_id, None)
        tool = call.tool if call else "tool"
        if isinstance(p, ToolCallFailed):
            words = clean(explain(p.code, self.lang, p.message))
            return [Shown(f"✗ {tool}: {words}", "err")]
        output = "".join(call.output) if call and call.output else _result_text(p.result)
        shown = [Shown(f"✓ {tool} ({p.duration:.1f} s)", "ok")]
        if output.strip():
            shown.append(Shown(fold(output, f"tether runs events {run_id}"), "dim"))
        return shown

    def _request(
        self,
        run_id: str,
        p: ApprovalRequested | QuestionAsked | ApprovalResolved | QuestionAnswered,
    ) -> list[Shown]:
        if isinstance(p, ApprovalRequested):
            self.waiting[p.handle] = Waiting(
                p.request, p.handle, run_id, "approval", expires_at=p.expires_at
            )
            left = max(0, int(p.expires_at - time.time()))
            return [
                Shown(
                    f"? approval {p.handle}: {clean(describe_plan(p))}\n"
                    f"  why: {clean(p.rule)} · expires in {left} s\n"
                    "  [a] allow once   [s] allow for this session   [d] deny",
                    "ask",
                )
            ]
        if isinstance(p, QuestionAsked):
            self.waiting[p.handle] = Waiting(
                p.request, p.handle, run_id, "question", list(p.choices), p.expires_at
            )
            lines = [f"? question {p.handle}: {clean(p.question)}"]
            lines += [f"  [{i}] {clean(c)}" for i, c in enumerate(p.choices, 1)]
            lines.append(
                "  type a number or an answer, then Enter"
                if p.choices
                else "  type your answer, then Enter"
            )
            return [Shown("\n".join(lines), "ask")]
        self.waiting.pop(p.handle, None)
        who = self._who(p.by)
        if isinstance(p, ApprovalResolved):
            words = {
                "allow_once": f"allowed once by {who}",
                "allow_session": f"allowed for this session by {who}",
                "deny": f"denied by {who}",
                "expired": "expired: nobody decided in time",
                "cancelled": "cancelled",
            }[p.decision]
            return [Shown(f"  {p.handle} {words}", "err" if p.decision == "deny" else "dim")]
        if p.decision == "answer":
            return [Shown(f"  {p.handle} answered by {who}: {clean(p.answer or '')}", "dim")]
        return [Shown(f"  {p.handle} {p.decision}", "dim")]

    def _ended(
        self, run_id: str, at: float, p: RunSucceeded | RunFailed | RunCancelled | RunExpired
    ) -> list[Shown]:
        self._streams.pop(run_id, None)
        self._calls.clear()
        for handle in [h for h, w in self.waiting.items() if w.run_id == run_id]:
            del self.waiting[handle]
        if self.active == run_id or self.active is None:
            self.active, self.state, self.activity = None, "idle", ""
        began = self._started.pop(run_id, None)
        took = f" · {at - began:.1f} s" if began is not None else ""
        said = self._said.pop(run_id, None)
        shown: list[Shown] = []
        output = clean(p.output or "") if not isinstance(p, RunExpired) else ""
        if output.strip() and output.strip() != (said or "").strip():
            shown.append(Shown(output, "agent", markdown=True))
        if isinstance(p, RunSucceeded):
            shown.append(Shown(f"— done{took}", "dim"))
        else:
            word = {
                RunFailed.KIND: "failed",
                RunCancelled.KIND: "stopped",
                RunExpired.KIND: "expired",
            }[p.KIND]
            reason = explain(p.reason or word, self.lang, p.message or "") if p.reason else ""
            shown.append(Shown(f"— {word}{took}" + (f": {clean(reason)}" if reason else ""), "err"))
        return shown


def _what(tool: str, args: dict[str, object]) -> str:
    if tool == "shell" and "command" in args:
        return str(args["command"])[:300]
    for key in ("path", "pattern", "url"):
        if key in args:
            return str(args[key])[:300]
    return ", ".join(f"{k}={v!r}" for k, v in sorted(args.items()))[:300]


def _result_text(result: object) -> str:
    if isinstance(result, dict):
        parts = [str(result[k]) for k in ("stdout", "stderr", "content", "text") if result.get(k)]
        return clean("\n".join(parts))
    return clean(str(result)) if result not in (None, "") else ""
