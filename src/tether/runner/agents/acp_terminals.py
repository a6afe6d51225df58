"""An ACP agent's terminals: each one command, run as a tether ``shell`` tool call.

``terminal/create`` starts the call (the gateway decides it, the runner's sandboxed
shell runs it under a token) and answers at once with a terminal id; ``output`` is what
the command printed once it has ended (nothing before), cut to the agent's byte limit
from the end; ``wait_for_exit`` waits for it; ``kill`` cancels the call on the runner.
A command tether refused ends with exit status 126 and tether's reason as its output.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from tether.protocol.hosted import AgentToolAnswer

__all__ = ["TERMINAL_OUTPUT", "Exit", "Terminals"]

TERMINAL_OUTPUT = 1024 * 1024
"""The most output a terminal keeps when the agent sets no limit."""
REFUSED = 126
"""The exit status of a command tether did not run."""


@dataclass(frozen=True, slots=True)
class Exit:
    exit_code: int | None
    signal: str | None = None


@dataclass
class _Terminal:
    task: asyncio.Task[AgentToolAnswer]
    limit: int
    call_id: str


class Terminals:
    """See the module docstring. ``cancel_call`` cancels one of the runner's calls."""

    def __init__(self, cancel_call: Callable[[str], None]) -> None:
        self.cancel_call = cancel_call
        self._open: dict[str, _Terminal] = {}
        self._next = 0

    def add(self, task: asyncio.Task[AgentToolAnswer], call_id: str, limit: int | None) -> str:
        self._next += 1
        terminal_id = f"term{self._next}"
        self._open[terminal_id] = _Terminal(task, limit or TERMINAL_OUTPUT, call_id)
        return terminal_id

    def has(self, terminal_id: str) -> bool:
        return terminal_id in self._open

    def _get(self, terminal_id: str) -> _Terminal:
        terminal = self._open.get(terminal_id)
        if terminal is None:
            raise KeyError(terminal_id)
        return terminal

    @staticmethod
    def _ended(terminal: _Terminal) -> tuple[str, Exit | None]:
        if not terminal.task.done():
            return "", None
        if terminal.task.cancelled():
            return "", Exit(None, "SIGKILL")
        answer = terminal.task.result()
        if not answer.ok:
            return f"tether: {answer.message or answer.code}\n", Exit(REFUSED)
        result = answer.result if isinstance(answer.result, dict) else {}
        code = result.get("exit_code")
        return str(result.get("output") or ""), Exit(code if isinstance(code, int) else None)

    def output(self, terminal_id: str) -> tuple[str, bool, Exit | None]:
        """What it printed (once ended), whether that was cut, and how it ended."""
        terminal = self._get(terminal_id)
        text, ended = self._ended(terminal)
        data = text.encode()
        truncated = len(data) > terminal.limit
        if truncated:
            text = data[-terminal.limit :].decode("utf-8", "ignore")
        return text, truncated, ended

    async def wait(self, terminal_id: str) -> Exit:
        terminal = self._get(terminal_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(terminal.task)
        _, ended = self._ended(terminal)
        return ended or Exit(None)

    def kill(self, terminal_id: str) -> None:
        terminal = self._get(terminal_id)
        if not terminal.task.done():
            self.cancel_call(terminal.call_id)

    def release(self, terminal_id: str) -> None:
        self.kill(terminal_id)
        self._open.pop(terminal_id, None)

    def close(self) -> None:
        for terminal in self._open.values():
            terminal.task.cancel()
