"""Params of the ``agent.*`` methods: hosted agents driven over the runner link.

A hosted agent (Codex, or an ACP agent such as Claude Code) runs on the runner; one tether run is one of its turns. The
gateway starts a turn (``agent.start``, under a capability token bound to the runner,
run, agent and workspace), steers and interrupts it; the runner sends the turn's events
(``agent.event``, numbered ``n`` = 1, 2, … per run) and asks for decisions
(``agent.permission``, a :class:`~tether.protocol.runners.RunnerRequest`: re-sent after
a reconnect until answered). The runner keeps a turn's events until the gateway has
committed them (``agent.ack``); ``agent.start`` again for a turn the runner has (after a
reconnect or a gateway restart) attaches to it and replays what came after ``after``.
An agent that leaves files and commands to its client (ACP's ``fs/*`` and ``terminal/*``)
gets them as tether tool calls: the runner asks with ``agent.tool`` and the gateway
decides, mints the token and sends the call back to the runner (``tool.execute``).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec

from tether.protocol.runners import RunnerRequest

__all__ = [
    "HOST_KINDS",
    "TURN_ENDED",
    "AgentAckNote",
    "AgentEventNote",
    "AgentPermissionAnswer",
    "AgentPermissionParams",
    "AgentStartParams",
    "AgentStarted",
    "AgentSteerParams",
    "AgentStopParams",
    "AgentToolAnswer",
    "AgentToolParams",
    "AgentTurnParams",
    "AgentWithdrawNote",
    "call_id_for",
    "op_call_id",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AgentId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Text = Annotated[str, msgspec.Meta(max_length=1_000_000)]

TURN_ENDED = "turn.ended"
"""The last event of a turn (not a catalogue event): ``status`` (``completed``,
``interrupted``, ``failed``), ``output`` (the final reply, read from the agent's
history), ``reason`` and ``message`` when it did not complete."""

HOST_KINDS = frozenset(
    {
        "agent.message",
        "agent.delta",
        "agent.step",
        "agent.usage",
        "agent.status",
        "tool.call.requested",
        "tool.call.decided",
        "tool.call.output",
        "tool.call.succeeded",
        "tool.call.failed",
        TURN_ENDED,
    }
)
"""What a runner may say about a hosted turn. The gateway records nothing else from it
(never a run's end, a request or a person's decision), and a ``tool.call.decided`` it
sends is recorded only as the agent's own sandbox deciding."""


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class AgentStartParams(_Params):
    """Gateway -> runner: start (or attach to) the turn that is run ``run_id``."""

    run_id: Id
    session_id: Id
    agent: AgentId
    workspace: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    input: Text
    token: str
    """A capability token for tool ``agent:<agent>``, call id ``run_id``, args
    ``{"session": session_id}`` and ``workspace``: one per start."""
    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    """The turn's events the gateway already has: the runner replays those after it."""
    resumed: bool = False
    """The gateway resumed the run after a restart (the runner may not know the turn)."""
    thread: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """Attach the session to this agent thread (``tether sessions attach``)."""
    resend: bool = False


class AgentStarted(msgspec.Struct, kw_only=True):
    run_id: str
    thread: str | None
    """The agent's thread id (Codex), once known."""
    attached: bool
    """True when the runner already had the turn (its events are replayed)."""
    resume: str | None = None
    """The command that continues the thread in a terminal on the runner's machine."""


class AgentTurnParams(_Params):
    """Gateway -> runner: ``agent.interrupt`` a turn, or ``agent.done`` (forget it)."""

    run_id: Id


class AgentSteerParams(_Params):
    run_id: Id
    text: Text


class AgentStopParams(_Params):
    """Gateway -> runner: stop the session's agent process (its thread stays)."""

    session_id: Id


class AgentAckNote(_Params):
    """Gateway -> runner: the turn's events up to ``n`` are committed."""

    run_id: Id
    n: Annotated[int, msgspec.Meta(ge=0)]


class AgentEventNote(_Params):
    """Runner -> gateway: event ``n`` of the turn (a kind of :data:`HOST_KINDS`)."""

    run_id: Id
    n: Annotated[int, msgspec.Meta(ge=1)]
    kind: Annotated[str, msgspec.Meta(max_length=64)]
    payload: dict[str, Any]


class AgentPermissionParams(RunnerRequest):
    """Runner -> gateway: the agent asks before it acts; answered by policy or a person.

    ``command``: ``args`` are ``{"command", "cwd"}`` (tool ``shell``); ``file_change``:
    ``{"paths", "diff"}`` (tool ``apply_patch``); ``permissions``: what it asks for
    (tool ``agent_permissions``); ``question``: ``question`` and ``choices``."""

    run_id: Id
    kind: Literal["command", "file_change", "permissions", "question"]
    call_id: Id
    tool: Annotated[str, msgspec.Meta(max_length=64)] = ""
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    reason: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    question: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    choices: list[Annotated[str, msgspec.Meta(max_length=200)]] = msgspec.field(
        default_factory=list
    )


class AgentWithdrawNote(_Params):
    """Runner -> gateway: the agent closed a request itself (nobody needs to decide it)."""

    run_id: Id
    kind: Literal["command", "file_change", "permissions", "question"]
    call_id: Id


class AgentPermissionAnswer(msgspec.Struct, kw_only=True):
    decision: Literal["accept", "decline", "cancel"]
    """``accept`` always means once: "for this session" stays a rule inside tether."""
    answer: str | None = None
    """A question's answer."""
    message: str = ""


class AgentToolParams(RunnerRequest):
    """Runner -> gateway: a hosted agent asks its client for a file or a command (ACP
    ``fs/*``, ``terminal/*``). The gateway makes it a tool call of the run (policy, a
    person, a token) with call id ``op_call_id(run_id, call_id)``, and a tool call is
    never run twice for one ``call_id``."""

    run_id: Id
    call_id: Id
    tool: Literal["read_file", "write_file", "shell"]
    args: dict[str, Any]
    covers: Id | None = None
    """The agent's action this carries out (``call_id`` of an ``agent.permission`` the
    gateway allowed for the same paths): decided by that decision, not asked again."""


class AgentToolAnswer(msgspec.Struct, kw_only=True):
    ok: bool
    result: Any = None
    """The tool's result (as ``tool.execute`` returns it) when ``ok``."""
    code: str = ""
    """Why not (an error code: ``policy_denied``, ``approval_denied``, ``tool_failed``, …)."""
    reason: str = ""
    """The tool's own reason when it failed (``not_found``, ``outside_workspace``, …)."""
    message: str = ""


def call_id_for(run_id: str, item_id: str) -> str:
    """A stable tether call id for one of a hosted agent's items in a run (the same after
    a reconnect, different across runs even when the agent reuses item ids)."""
    digest = hashlib.sha256(f"{run_id}\0{item_id}".encode()).hexdigest()[:24]
    return f"call_cx{digest}"


def op_call_id(run_id: str, op: str) -> str:
    """The tether call id of a runner's ``agent.tool`` operation ``op`` in a run: derived
    apart from :func:`call_id_for`, so no id an agent picks for its own tool calls can
    name one of these."""
    digest = hashlib.sha256(f"agent.tool\0{run_id}\0{op}".encode()).hexdigest()[:24]
    return f"call_op{digest}"
