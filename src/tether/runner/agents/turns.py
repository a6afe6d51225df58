"""One hosted turn on the runner: its numbered events and how it ends.

:meth:`Turn.emit` numbers an event, keeps it in the turn's
:class:`~tether.runner.agents.journal.TurnJournal` and sends it if the gateway is
listening; :meth:`Turn.replay` sends what the gateway lacks after a reconnect. When the
journal is full the turn's ``on_overflow`` runs once (the host interrupts the agent)
and nothing more is kept until :meth:`Turn.end`, whose event always fits. Every payload
goes through ``mask`` first: secrets never leave the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from tether.protocol.hosted import TURN_ENDED, AgentEventNote
from tether.runner.agents.journal import TurnJournal

__all__ = ["Permission", "Turn"]

log = logging.getLogger(__name__)

Send = Callable[[AgentEventNote], bool]
"""Send one event to the gateway now; False when it is not connected."""
_decode = msgspec.json.Decoder(AgentEventNote).decode


@dataclass(frozen=True, slots=True)
class Permission:
    """What a hosted agent asks before it acts (see ``AgentPermissionParams``)."""

    kind: Literal["command", "file_change", "permissions", "question"]
    call_id: str
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    question: str = ""
    choices: list[str] = field(default_factory=list)


class Turn:
    """See the module docstring."""

    def __init__(
        self,
        *,
        run_id: str,
        session_id: str,
        runner: str,
        workspace: str,
        journal: TurnJournal,
        send: Send,
        mask: Callable[[Any], Any],
    ) -> None:
        self.run_id = run_id
        self.session_id = session_id
        self.runner = runner
        self.workspace = workspace
        self.journal = journal
        self.send = send
        self.mask = mask
        self.ended = False
        self.done = asyncio.Event()
        self.on_overflow: Callable[[Turn], None] | None = None
        self._overflowed = False
        self.listening = True
        """False while the gateway is away (events are only kept)."""

    def _note(self, kind: str, payload: dict[str, Any]) -> AgentEventNote:
        return AgentEventNote(
            run_id=self.run_id, n=self.journal.last + 1, kind=kind, payload=self.mask(payload)
        )

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        """Number, keep and (if it can) send one event; ignored after the turn ended."""
        if self.ended or self._overflowed:
            return
        note = self._note(kind, payload)
        if self.journal.add(msgspec.json.encode(note)) is None:
            self._overflowed = True
            log.warning(
                "! a hosted turn's event buffer is full; interrupting it",
                extra={"run_id": self.run_id, "kept": self.journal.kept},
            )
            if self.on_overflow is not None:
                self.on_overflow(self)
            return
        self._send(note)

    def end(
        self,
        status: Literal["completed", "interrupted", "failed"],
        *,
        output: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """The turn's last event (it always fits: the journal makes room for it)."""
        if self.ended:
            return
        if self._overflowed:
            status, reason = "failed", "buffer_full"
            message = (
                "the gateway was away too long: this turn's events filled the runner's buffer "
                f"({self.journal.disk_bytes} bytes on disk), so it was interrupted"
            )
        payload = {"status": status, "output": output, "reason": reason, "message": message}
        note = self._note(TURN_ENDED, payload)
        self.journal.add(msgspec.json.encode(note), force=True)
        self.ended = True
        self._send(note)
        self.done.set()

    def _send(self, note: AgentEventNote) -> None:
        if self.listening and not self.send(note):
            self.listening = False

    def replay(self, after: int) -> int:
        """Send every kept event after ``after``; returns how many."""
        self.listening = True
        sent = 0
        for _n, data in self.journal.after(after):
            if not self.send(_decode(data)):
                self.listening = False
                break
            sent += 1
        return sent
