"""The run event catalogue: every kind of event a run's log can hold, with its payload.

Each kind is a frozen Struct here, registered with its dotted, past-tense name, the
party that records it (``source``) and one line of meaning. Every emitter builds one of
these (``RunContext.emit(AgentMessage(text=…))``); nothing records a kind that is not in
:data:`CATALOGUE`. ``docs/protocol.md`` lists them (generated). Later issues add their
kinds (approvals, channel deliveries, hosted agents) here and nowhere else.

Payloads are stored as JSON and reach clients as the ``payload`` of ``run.event``;
:func:`encode_payload` gives that JSON (with secrets redacted by the caller's redactor),
:func:`decode_payload` reads a stored one back into its Struct (fields unknown to this
version are ignored, so older and newer logs both read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal, TypeVar

import msgspec

__all__ = [
    "CATALOGUE",
    "TERMINAL_EVENTS",
    "AgentDelta",
    "AgentMessage",
    "AgentStatus",
    "AgentStep",
    "AgentUsage",
    "ApprovalRequested",
    "ApprovalResolved",
    "EventSource",
    "QuestionAnswered",
    "QuestionAsked",
    "RequestUnseen",
    "RunCancelRequested",
    "RunCancelled",
    "RunEvent",
    "RunExpired",
    "RunFailed",
    "RunQueued",
    "RunRecovered",
    "RunRunning",
    "RunStarted",
    "RunStopEscalated",
    "RunSucceeded",
    "RunWaiting",
    "SteeringDropped",
    "SteeringReceived",
    "SteeringRequeued",
    "ToolCallDecided",
    "ToolCallFailed",
    "ToolCallOutput",
    "ToolCallRequested",
    "ToolCallSucceeded",
    "decode_payload",
    "payload_data",
]

EventSource = Literal["gateway", "agent", "runner"]


class RunEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload; ``KIND``, ``SOURCE`` and ``SUMMARY`` are set per kind."""

    KIND: ClassVar[str]
    SOURCE: ClassVar[EventSource]
    SUMMARY: ClassVar[str]


CATALOGUE: dict[str, type[RunEvent]] = {}
"""Event kind -> its payload type, in the order they are listed in the docs."""

E = TypeVar("E", bound=type[RunEvent])


def _kind(kind: str, source: EventSource, summary: str) -> Callable[[E], E]:
    def register(cls: E) -> E:
        if kind in CATALOGUE:
            raise ValueError(f"event kind {kind!r} registered twice")
        cls.KIND, cls.SOURCE, cls.SUMMARY = kind, source, summary
        CATALOGUE[kind] = cls
        return cls

    return register


# ---- the run's life --------------------------------------------------------------------


@_kind("run.queued", "gateway", "The run was accepted and waits for a gateway to start it.")
class RunQueued(RunEvent, frozen=True, kw_only=True):
    input: str
    agent: str


@_kind("run.started", "gateway", "A gateway started the run's agent (first attempt).")
class RunStarted(RunEvent, frozen=True, kw_only=True):
    agent: str
    attempt: int


@_kind("run.recovered", "gateway", "After a restart or a lost lease, a gateway resumed the run.")
class RunRecovered(RunEvent, frozen=True, kw_only=True):
    attempt: int


@_kind("run.waiting", "gateway", "The run waits (for a person, a runner or a reply).")
class RunWaiting(RunEvent, frozen=True, kw_only=True):
    reason: str = ""


@_kind("run.running", "gateway", "The run is running again after waiting.")
class RunRunning(RunEvent, frozen=True, kw_only=True):
    reason: str = ""


@_kind("run.cancel_requested", "gateway", "Someone asked to cancel the run; its agent is told.")
class RunCancelRequested(RunEvent, frozen=True, kw_only=True):
    reason: str = ""


@_kind(
    "run.stop_escalated",
    "gateway",
    "The agent did not stop within the grace period and was stopped hard.",
)
class RunStopEscalated(RunEvent, frozen=True, kw_only=True):
    after_seconds: float


@_kind("run.succeeded", "gateway", "The run ended well; ``output`` is its final reply.")
class RunSucceeded(RunEvent, frozen=True, kw_only=True):
    output: str | None = None
    reason: str | None = None


@_kind("run.failed", "gateway", "The run ended in failure; ``reason`` is a stable word.")
class RunFailed(RunEvent, frozen=True, kw_only=True):
    reason: str | None = None
    output: str | None = None
    message: str | None = None


@_kind("run.cancelled", "gateway", "The run was cancelled.")
class RunCancelled(RunEvent, frozen=True, kw_only=True):
    reason: str | None = None
    output: str | None = None
    message: str | None = None


@_kind("run.expired", "gateway", "The run waited in the queue longer than ``queue_ttl``.")
class RunExpired(RunEvent, frozen=True, kw_only=True):
    reason: str | None = None
    message: str | None = None


# ---- input while it runs ---------------------------------------------------------------


@_kind("steering.received", "gateway", "Input for the active run, which its agent will read.")
class SteeringReceived(RunEvent, frozen=True, kw_only=True):
    text: str
    sender: str | None = None


@_kind(
    "steering.dropped",
    "gateway",
    "Input for the active run that was not taken: its queue was full (the sender was told "
    "`dropped`), or the run was cancelled before its agent read it.",
)
class SteeringDropped(RunEvent, frozen=True, kw_only=True):
    text: str
    reason: str
    sender: str | None = None


@_kind(
    "steering.requeued",
    "gateway",
    "Input the run's agent had not read when it finished: it starts the session's next run.",
)
class SteeringRequeued(RunEvent, frozen=True, kw_only=True):
    text: str
    run_id: str
    """The run it became."""
    sender: str | None = None


# ---- tool calls ------------------------------------------------------------------------


@_kind("tool.call.requested", "gateway", "The agent asked for a tool call on a runner.")
class ToolCallRequested(RunEvent, frozen=True, kw_only=True):
    call_id: str
    runner: str
    tool: str
    args: dict[str, Any]
    workspace: str


@_kind("tool.call.output", "runner", "Output a running tool streamed (stdout or stderr).")
class ToolCallOutput(RunEvent, frozen=True, kw_only=True):
    call_id: str
    stream: Literal["stdout", "stderr"]
    text: str


@_kind("tool.call.succeeded", "gateway", "The tool call finished; ``result`` is its JSON result.")
class ToolCallSucceeded(RunEvent, frozen=True, kw_only=True):
    call_id: str
    duration: float
    result: Any


@_kind("tool.call.failed", "gateway", "The tool call was refused or failed; ``code`` says why.")
class ToolCallFailed(RunEvent, frozen=True, kw_only=True):
    call_id: str
    code: str
    message: str


@_kind(
    "tool.call.decided",
    "gateway",
    "Policy or a person decided the call: ``decision`` (allow or deny) and ``by`` (the rule or the person).",
)
class ToolCallDecided(RunEvent, frozen=True, kw_only=True):
    call_id: str
    decision: Literal["allow", "deny"]
    by: str
    """``rule`` or the id of the person who decided."""
    rule: str
    """The rule, mode or request that decided, in words."""


# ---- requests: approvals and questions -------------------------------------------------


@_kind(
    "approval.requested",
    "gateway",
    "A tool call waits for a person: the exact plan, who may decide, until when.",
)
class ApprovalRequested(RunEvent, frozen=True, kw_only=True):
    request: str
    handle: str
    call_id: str
    tool: str
    runner: str
    workspace: str
    args: dict[str, Any]
    """As requested (paths workspace-relative; the runner's resolution is authoritative)."""
    commands: list[str] | None = None
    """For shell: the simple commands it would run."""
    cwd: str | None = None
    env: list[str] = []
    """For shell: names of the environment variables it sets."""
    rule: str
    """Why it asks."""
    approvers: list[str]
    expires_at: float


@_kind(
    "approval.resolved",
    "gateway",
    "The approval was decided (``allow_once``, ``allow_session``, ``deny``), expired or was cancelled.",
)
class ApprovalResolved(RunEvent, frozen=True, kw_only=True):
    request: str
    handle: str
    decision: Literal["allow_once", "allow_session", "deny", "expired", "cancelled"]
    by: str | None
    at: float


@_kind(
    "question.asked", "gateway", "The agent asks a person a question (with choices, or free text)."
)
class QuestionAsked(RunEvent, frozen=True, kw_only=True):
    request: str
    handle: str
    question: str
    choices: list[str] = []
    approvers: list[str]
    expires_at: float


@_kind(
    "question.answered",
    "gateway",
    "The question was answered, expired or was cancelled; ``answer`` is what the person said.",
)
class QuestionAnswered(RunEvent, frozen=True, kw_only=True):
    request: str
    handle: str
    decision: Literal["answer", "expired", "cancelled"]
    answer: str | None = None
    by: str | None
    at: float


@_kind(
    "request.unseen",
    "gateway",
    "No person who may decide the request is connected: it will expire unless one comes.",
)
class RequestUnseen(RunEvent, frozen=True, kw_only=True):
    request: str
    handle: str
    reason: str


# ---- what the agent says ---------------------------------------------------------------


@_kind("agent.message", "agent", "A complete message from the agent (the last one is the reply).")
class AgentMessage(RunEvent, frozen=True, kw_only=True):
    text: str


@_kind("agent.delta", "agent", "A piece of text the agent is still writing.")
class AgentDelta(RunEvent, frozen=True, kw_only=True):
    text: str
    index: int | None = None


@_kind("agent.step", "agent", "The agent finished a step of its work (a resume point).")
class AgentStep(RunEvent, frozen=True, kw_only=True):
    step: int
    memo: Any = None
    """What the agent needs to go on from this step after a restart, in its own format
    (the ``openai`` agent: the messages this step added)."""


@_kind(
    "agent.usage",
    "agent",
    "What a model call cost, as the model server reported it (missing means unknown, never zero).",
)
class AgentUsage(RunEvent, frozen=True, kw_only=True):
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None


@_kind("agent.status", "agent", "What the agent is doing now, in a few words (telemetry).")
class AgentStatus(RunEvent, frozen=True, kw_only=True):
    text: str


TERMINAL_EVENTS: Final = frozenset(
    {RunSucceeded.KIND, RunFailed.KIND, RunCancelled.KIND, RunExpired.KIND}
)
"""Event kinds that end a run: nothing follows them."""


def payload_data(event: RunEvent) -> dict[str, Any]:
    """The payload as plain data (what is redacted, then stored and sent)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data


def decode_payload(kind: str, raw: bytes | str) -> RunEvent | None:
    """A stored payload read back into its Struct; None for a kind this version lacks."""
    cls = CATALOGUE.get(kind)
    if cls is None:
        return None
    return msgspec.json.decode(raw, type=cls)
