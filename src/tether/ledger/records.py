"""What the ledger hands back: immutable records of rows, and new events to append."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from sqlalchemy.engine import Row

from tether.ledger.states import TERMINAL
from tether.types import RunState

__all__ = ["Artifact", "Event", "NewEvent", "RoutineRecord", "Run", "Session", "from_row"]

T = TypeVar("T", bound=msgspec.Struct)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    conversation_id: str | None
    agent: str
    runner_id: str | None
    workspace: str | None
    policy: str
    status: str
    created_by: str | None
    created_at: float
    updated_at: float
    mode: str = "ask"
    """How tool calls are decided: ``ask``, ``auto-read`` or ``auto`` (see ``SessionMode``)."""
    agent_thread: str | None = None
    """A hosted agent's thread the session continues (Codex's thread id)."""
    agent_resume: str | None = None
    """The command that continues that thread in a terminal (``codex resume …``)."""


class Run(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session_id: str
    agent: str
    state: RunState
    reason: str | None
    input: str
    output: str | None
    created_by: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    owner: str | None
    lease_expires_at: float | None
    epoch: int
    attempts: int
    cancel_requested_at: float | None
    authorization: str | None = None
    """JSON: what the run may ever use, frozen when it started (``gateway.authorization``)."""

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One committed event. ``payload`` is JSON text."""

    run_id: str
    seq: int
    kind: str
    source: str
    payload: str
    created_at: float
    epoch: int
    origin: int | None = None
    """A hosted agent's event: its runner's number for it (see ``run_events.origin``)."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append at ``seq``. ``payload`` is JSON text (see ``tether.ledger.events``)."""

    seq: int
    kind: str
    source: str
    payload: str
    created_at: float
    origin: int | None = None

    def committed(self, run_id: str, epoch: int) -> Event:
        """The record this event is once committed to ``run_id`` under ``epoch``."""
        return Event(
            run_id=run_id,
            seq=self.seq,
            kind=self.kind,
            source=self.source,
            payload=self.payload,
            created_at=self.created_at,
            epoch=epoch,
            origin=self.origin,
        )


class Artifact(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    run_id: str | None
    name: str
    media_type: str
    size: int
    sha256: str
    content: bytes
    created_at: float
    expires_at: float | None


class RoutineRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A routine: a cron schedule in a zone that starts a run in its session as its owner."""

    id: str
    name: str
    owner: str
    """The principal it runs as (a user id, or the owner's ``admin``/``local-admin``)."""
    session_id: str
    cron: str
    tz: str
    input: str
    state: str
    """``active`` or ``paused``."""
    catch_up: str
    """``once`` (a missed window runs once) or ``skip``."""
    next_fire_at: float | None
    last_fired_at: float | None
    last_run_id: str | None
    source: str
    """``cli`` (added through the API) or ``config`` (``[routines.NAME]``)."""
    created_at: float
    updated_at: float


def from_row(cls: type[T], row: Row[Any]) -> T:
    """Build a record from a result row (column names equal field names)."""
    return msgspec.convert({str(k): v for k, v in row._mapping.items()}, cls, strict=False)
