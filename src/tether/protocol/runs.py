"""Params and results of the run and session methods, and the event notifications."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "TERMINAL_EVENTS",
    "ArtifactChunk",
    "ArtifactGetParams",
    "EventInfo",
    "EventPage",
    "RunCancelParams",
    "RunCreateParams",
    "RunCreated",
    "RunEventNote",
    "RunEventsParams",
    "RunGetParams",
    "RunInfo",
    "RunListParams",
    "RunPage",
    "RunResyncNote",
    "RunSubscribeParams",
    "SessionGetParams",
    "SessionInfo",
    "SessionListParams",
    "SessionPage",
    "Subscribed",
    "UnsubscribeParams",
]

TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.expired"})
"""Event kinds that end a run: nothing follows them."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
RunStateName = Literal[
    "queued", "running", "waiting", "succeeded", "failed", "cancelled", "expired"
]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RunInfo(msgspec.Struct, kw_only=True):
    id: str
    session_id: str
    agent: str
    state: RunStateName
    reason: str | None
    input: str
    output: str | None
    created_by: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    epoch: int
    owner: str | None
    cancel_requested: bool


class SessionInfo(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str | None
    agent: str
    runner_id: str | None
    workspace: str | None
    status: str
    created_by: str | None
    created_at: float
    updated_at: float


class EventInfo(msgspec.Struct, kw_only=True):
    run_id: str
    seq: int
    kind: str
    source: str
    created_at: float
    payload: msgspec.Raw


class RunCreateParams(_Params):
    """Start work: a new run in a session (a new session when none is given).

    When the session already has an active run whose agent takes steering, the input is
    steered into it instead (``steer=false`` always queues a new run)."""

    input: Annotated[str, msgspec.Meta(max_length=1_000_000)]
    session_id: Id | None = None
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    steer: bool = True


class RunCreated(msgspec.Struct, kw_only=True):
    run: RunInfo
    disposition: Literal["started", "queued", "steered", "dropped"]
    """``started``: nothing ahead of it; ``queued``: waits behind an active or queued run;
    ``steered``: delivered to the active run; ``dropped``: the steering queue was full."""


class RunGetParams(_Params):
    run_id: Id


class RunListParams(_Params):
    session_id: Id | None = None
    states: list[RunStateName] | None = None
    cursor: Id | None = None
    limit: Limit = 50


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunInfo]
    next_cursor: str | None


class RunEventsParams(_Params):
    run_id: Id
    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Limit = 500


class ArtifactGetParams(_Params):
    """A slice of an artifact (large event payloads are stored as artifacts; an event
    then carries ``{"artifact": id, "size": n, "media_type": t}``)."""

    artifact_id: Id
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=512 * 1024)] = 256 * 1024


class ArtifactChunk(msgspec.Struct, kw_only=True):
    id: str
    run_id: str | None
    name: str
    media_type: str
    size: int
    sha256: str
    offset: int
    data: bytes
    """The slice's bytes; in JSON a base64 string (standard alphabet, with padding)."""
    eof: bool
    """True when this slice reaches the end of the artifact."""


class EventPage(msgspec.Struct, kw_only=True):
    events: list[EventInfo]
    state: RunStateName
    last_seq: int


class RunSubscribeParams(_Params):
    """Follow one run (``run_id``) or every run of a session (``session_id``).

    Events after the cursor come first from the ledger, then live, with no gap and no
    duplicate. For a run the cursor is ``after_seq``. For a session it is ``after`` (the
    last seq seen per run) from run ``since_run`` on; without ``since_run`` the backlog
    covers the session's unfinished runs."""

    run_id: Id | None = None
    session_id: Id | None = None
    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    after: dict[str, int] = msgspec.field(default_factory=dict)
    since_run: Id | None = None


class Subscribed(msgspec.Struct, kw_only=True):
    subscription: str


class UnsubscribeParams(_Params):
    subscription: Id


class RunCancelParams(_Params):
    run_id: Id
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class SessionGetParams(_Params):
    session_id: Id


class SessionListParams(_Params):
    cursor: Id | None = None
    limit: Limit = 50


class SessionPage(msgspec.Struct, kw_only=True):
    sessions: list[SessionInfo]
    next_cursor: str | None


class RunEventNote(msgspec.Struct, kw_only=True):
    """Notification ``run.event``: one committed event of a subscribed run."""

    subscription: str
    session_id: str
    event: EventInfo


class RunResyncNote(msgspec.Struct, kw_only=True):
    """Notification ``run.resync``: the subscription ended because the subscriber fell
    behind; subscribe again from the cursor given here."""

    subscription: str
    run_id: str | None
    session_id: str | None
    after_seq: int
    after: dict[str, int]
    since_run: str | None
    reason: str
