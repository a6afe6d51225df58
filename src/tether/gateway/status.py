"""``StatusBoard``: one status message per run in a chat, kept up to date.

It follows a run's events (state, tool calls and how they ended, what the agent is
writing) and says them as the run's status. On a channel that edits in place, every
update edits one message (the ledger keeps which platform message it is), at most one
edit per the channel's edit interval while the run goes on: the latest state wins, and the final
state is always sent. On a channel that cannot edit, a new message is sent only when the
run's state changes or a tool call starts or ends. Each update is a delivery keyed by the
event that caused it, so nothing is said twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tether.gateway.outbox import Outbox
from tether.gateway.phrases import Lang, explain
from tether.ledger import ConversationRecord, Event
from tether.protocol.events import (
    TERMINAL_EVENTS,
    AgentDelta,
    RunCancelled,
    RunExpired,
    RunFailed,
    RunRecovered,
    RunRunning,
    RunStarted,
    RunSucceeded,
    RunWaiting,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallSucceeded,
)

__all__ = ["STATUS_KINDS", "StatusBoard"]

log = logging.getLogger(__name__)

STATUS_KINDS = frozenset(
    {
        RunStarted.KIND,
        RunRecovered.KIND,
        RunWaiting.KIND,
        RunRunning.KIND,
        ToolCallRequested.KIND,
        ToolCallSucceeded.KIND,
        ToolCallFailed.KIND,
        AgentDelta.KIND,
        *TERMINAL_EVENTS,
    }
)
_SHOWN_CALLS = 8
_RUNS_KEPT = 10_000

_WORDS: dict[str, dict[Lang, str]] = {
    "running": {"en": "running", "zh": "运行中"},
    "waiting": {"en": "waiting", "zh": "等待中"},
    "succeeded": {"en": "done", "zh": "完成"},
    "failed": {"en": "failed", "zh": "失败"},
    "cancelled": {"en": "stopped", "zh": "已停止"},
    "expired": {"en": "expired", "zh": "已过期"},
    "calls": {"en": "tool calls", "zh": "次工具调用"},
    "writing": {"en": "writing", "zh": "正在输出"},
    "chars": {"en": "characters", "zh": "字"},
    "more": {"en": "more", "zh": "更多"},
}


def _word(key: str, lang: Lang) -> str:
    return _WORDS[key][lang]


@dataclass
class _Run:
    run_id: str
    conversation: ConversationRecord
    lang: Lang
    state: str = "running"
    calls: dict[str, list[str]] = field(default_factory=dict)
    """Call id -> [tool, what, mark]; mark: ``…`` running, ``✓`` done, ``✗`` failed."""
    started: float = field(default_factory=time.monotonic)
    chars: int = 0
    last_sent: float = 0.0
    sent_seq: int = 0
    pending_seq: int = 0
    timer: asyncio.Task[None] | None = None
    reason: str = ""

    def text(self) -> str:
        lang = self.lang
        elapsed = int(time.monotonic() - self.started)
        head = f"{self.run_id}: {_word(self.state, lang)} · {elapsed} s · {len(self.calls)} {_word('calls', lang)}"
        if self.reason:
            head += f" · {self.reason}"
        lines = [head]
        calls = list(self.calls.values())
        for tool, what, mark in calls[-_SHOWN_CALLS:]:
            lines.append(f"  {mark} {tool} {what}".rstrip())
        if len(calls) > _SHOWN_CALLS:
            lines.insert(1, f"  … {len(calls) - _SHOWN_CALLS} {_word('more', lang)}")
        if self.state == "running" and self.chars:
            lines.append(f"  {_word('writing', lang)} · {self.chars} {_word('chars', lang)}")
        return "\n".join(lines)


def _what(args: dict[str, Any]) -> str:
    for key in ("command", "path", "pattern"):
        if key in args:
            return f"`{str(args[key])[:80]}`"
    return ""


class StatusBoard:
    """See the module docstring."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._runs: dict[str, _Run] = {}

    async def follow(
        self, conversation: ConversationRecord, event: Event, payload: Any, lang: Lang
    ) -> None:
        """Take one event of a run whose conversation shows a status."""
        run = self._runs.get(event.run_id)
        if run is None:
            while len(self._runs) >= _RUNS_KEPT:  # runs that ended elsewhere: forget the oldest
                stale = self._runs.pop(next(iter(self._runs)))
                if stale.timer is not None:
                    stale.timer.cancel()
            run = self._runs[event.run_id] = _Run(
                run_id=event.run_id, conversation=conversation, lang=lang
            )
        edge = self._apply(run, payload)
        final = event.kind in TERMINAL_EVENTS
        interval = self.outbox.edit_interval(conversation.channel)
        if interval is not None:
            run.pending_seq = event.seq
            if final or time.monotonic() - run.last_sent >= interval:
                await self._send(run, event.seq)
            elif run.timer is None:
                run.timer = asyncio.get_running_loop().create_task(
                    self._later(run, interval), name=f"status:{run.run_id}"
                )
        elif edge or final:
            await self._send(run, event.seq)
        if final:
            self._runs.pop(event.run_id, None)
            if run.timer is not None:
                run.timer.cancel()

    @staticmethod
    def _apply(run: _Run, payload: Any) -> bool:
        """Update the run's status; True when the state changed or a call started or ended."""
        if isinstance(payload, RunStarted | RunRecovered | RunRunning):
            changed = run.state != "running"
            run.state = "running"
            return changed or isinstance(payload, RunStarted | RunRecovered)
        if isinstance(payload, RunWaiting):
            run.state = "waiting"
            return True
        if isinstance(payload, ToolCallRequested):
            run.calls[payload.call_id] = [payload.tool, _what(payload.args), "…"]
            return True
        if isinstance(payload, ToolCallSucceeded):
            if payload.call_id in run.calls:
                run.calls[payload.call_id][2] = "✓"
            return True
        if isinstance(payload, ToolCallFailed):
            if payload.call_id in run.calls:
                run.calls[payload.call_id][2] = "✗"
                run.calls[payload.call_id][1] += f" ({explain(payload.code, run.lang)})"
            return True
        if isinstance(payload, AgentDelta):
            run.chars += len(payload.text)
            return False
        if isinstance(payload, RunSucceeded):
            run.state = "succeeded"
        elif isinstance(payload, RunFailed):
            run.state = "failed"
            run.reason = explain(payload.reason or "failed", run.lang)
        elif isinstance(payload, RunCancelled):
            run.state = "cancelled"
        elif isinstance(payload, RunExpired):
            run.state = "expired"
        return True

    async def _later(self, run: _Run, interval: float) -> None:
        """The latest state, once the interval since the last edit has passed."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(max(0.0, run.last_sent + interval - time.monotonic()))
            run.timer = None
            if run.pending_seq > run.sent_seq and run.run_id in self._runs:
                try:
                    await self._send(run, run.pending_seq)
                except Exception:
                    log.exception("a status update failed", extra={"run_id": run.run_id})

    async def _send(self, run: _Run, seq: int) -> None:
        run.last_sent = time.monotonic()
        run.sent_seq = seq
        await self.outbox.send(
            run.conversation,
            run.text(),
            key=f"status:{run.run_id}:{seq}",
            kind="status",
            run_id=run.run_id,
            status_of=run.run_id,
        )

    async def aclose(self) -> None:
        for run in list(self._runs.values()):
            if run.timer is not None:
                run.timer.cancel()
