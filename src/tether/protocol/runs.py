"""Params and results of the run and session methods, and the event notifications."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from tether.types import RunState, SessionMode

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
    "SessionUpdateParams",
    "Subscribed",
    "UnsubscribeParams",
]

TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.expired"})
"""Event kinds that end a run: nothing follows them."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RunInfo(msgspec.Struct, kw_only=True):
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
    attempts: int
    epoch: int
    owner: str | None
    cancel_requested: bool


class SessionInfo(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str | None
    agent: str
    """The agent its runs use (``run.create`` may override it for one run)."""
    runner_id: str | None
    """The runner its tool calls go to when a call names none."""
    workspace: str | None
    """The workspace on that runner, when a call names none."""
    mode: SessionMode = "ask"
    """How its tool calls are decided: ``ask``, ``auto-read`` or ``auto``."""
    status: str
    created_by: str | None
    created_at: float
    updated_at: float
    agent_thread: str | None = None
    """A hosted agent's thread the session continues (Codex's thread id)."""
    agent_resume: str | None = None
    """The command that continues that thread in a terminal, on the runner's machine."""


class SessionUpdateParams(_Params):
    """Change a session's settings; fields left out are kept, ``""`` clears runner or
    workspace."""

    session_id: Id
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    runner: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    """A runner's name or id."""
    workspace: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    mode: SessionMode | None = None
    agent_thread: (
        Annotated[str, msgspec.Meta(max_length=200, pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
        | None
    ) = None
    """Attach the session to this hosted agent thread (e.g. one started with the Codex
    CLI); its next run continues it. ``""`` detaches it (the next run starts afresh)."""


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
    ``steered``: given to the active run, whose agent will read it (if the run ends
    first, it starts the session's next run: ``steering.requeued``); ``dropped``: not
    taken, the steering queue was full. Input for a run that is stopping is queued as the
    next run (``queued``)."""


class RunGetParams(_Params):
    run_id: Id


class RunListParams(_Params):
    session_id: Id | None = None
    states: list[RunState] | None = None
    cursor: Id | None = None
    limit: Limit = 50


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunInfo]
    """Newest first: at most ``limit``, fewer when their inputs and outputs are long (a
    page stays well inside a frame)."""
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null at the end."""


class RunEventsParams(_Params):
    """A page of the run's events after ``after_seq``, in ``seq`` order; read on while
    the page says ``more``."""

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
    state: RunState
    last_seq: int
    """The last seq in this page (the run's last when the page is empty)."""
    more: bool
    """The run has events after this page: ask again after ``last_seq``. A page stops at
    ``limit`` events or at about 3/8 of the frame limit (384 KB by default), whichever
    comes first."""


class RunSubscribeParams(_Params):
    """Follow one run (``run_id``) or every run of a session (``session_id``).

    The backlog comes first from the ledger, then live events, with no gap and no
    duplicate (each event once, in ``seq`` order per run).

    - For a run: its events after ``after_seq`` (0: all of them).
    - For a session: every run of the session, oldest first, starting at the run
      ``since_run`` (all runs without it), each from the seq in ``after`` (the last seq
      already seen, per run id; a run not listed starts at 0); then runs started later.
      ``after_seq`` is not used for sessions.

    A subscription does not end with its run: it stays until ``run.unsubscribe``, a
    ``run.resync`` or the connection's end. ``run.event`` notifications of a run may
    arrive before the reply to the ``run.create`` that started it."""

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


class SessionHistoryParams(_Params):
    """A session with its latest ``runs`` runs and their events, in one answer: what a
    view of the session shows first. Follow it with ``run.subscribe`` (``since_run`` the
    first run here, ``after`` the last seq of each) for what comes next, with no gap."""

    session_id: Id
    runs: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class RunHistory(msgspec.Struct, kw_only=True):
    run: RunInfo
    events: list[EventInfo]
    """From the run's first event, in ``seq`` order."""
    complete: bool
    """False when the answer's size budget cut this run's events short (the answer stays
    well inside one frame): read the rest with ``run.events`` after the last seq here."""


class SessionHistory(msgspec.Struct, kw_only=True):
    session: SessionInfo
    runs: list[RunHistory]
    """Oldest first."""
    earlier: bool
    """The session has runs before these."""


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
