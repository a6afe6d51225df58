"""The method table: every method, its typed params and result, and who may call it.

This is the only place that says which role may call what. The gateway refuses a
request whose caller is not listed (``forbidden``); a runner refuses anything not sent
by the gateway. ``docs/protocol.md`` is generated from this table
(``python -m tether.protocol.docs``) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

import msgspec

from tether.protocol import access, agents, chat, hosted, routines, runners, runs
from tether.protocol.handshake import HelloParams, HelloResult
from tether.protocol.system import ConsoleLink, Empty, GatewayInfo, PingParams, Pong
from tether.types import USER_ROLES, Role, UserRole

__all__ = [
    "ADMIN",
    "ANY_ROLE",
    "CLIENTS",
    "FROM_GATEWAY",
    "GATEWAY",
    "GATEWAY_INFO",
    "HELLO",
    "METHODS",
    "PING",
    "Caller",
    "Method",
    "register",
]

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")

GATEWAY: Final = "gateway"
"""The sender of requests and notifications that go from the gateway to its peers."""
Caller = Role | Literal["gateway"]
ADMIN: Final[frozenset[Caller]] = frozenset({Role.ADMIN})
CLIENTS: Final[frozenset[Caller]] = frozenset({Role.ADMIN, Role.CLIENT})
ANY_ROLE: Final[frozenset[Caller]] = frozenset(Role)
RUNNERS: Final[frozenset[Caller]] = frozenset({Role.RUNNER})
FROM_GATEWAY: Final[frozenset[Caller]] = frozenset({GATEWAY})
EVERYONE: Final[frozenset[UserRole]] = frozenset(USER_ROLES)
"""User roles: viewers read (their own work)."""
MEMBERS: Final[frozenset[UserRole]] = frozenset({"owner", "member"})
"""User roles that start runs and decide requests on their own runs."""
OWNERS: Final[frozenset[UserRole]] = frozenset({"owner"})


@dataclass(frozen=True, eq=False)
class Method(Generic[P, R]):
    """One method. ``result`` is ``None`` for a notification (no reply)."""

    name: str
    params: type[P]
    result: type[R] | None
    callers: frozenset[Caller]
    """Connection roles that may send it, or :data:`GATEWAY` for what the gateway sends."""
    summary: str
    users: frozenset[UserRole] = EVERYONE
    """For a person's connection (admin or client): the user roles that may call it."""
    params_decoder: msgspec.json.Decoder[P] = field(init=False, repr=False)
    result_decoder: msgspec.json.Decoder[Any] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params_decoder", msgspec.json.Decoder(self.params))
        decoder = msgspec.json.Decoder(self.result) if self.result is not None else None
        object.__setattr__(self, "result_decoder", decoder)

    @property
    def is_notification(self) -> bool:
        return self.result is None


METHODS: dict[str, Method[Any, Any]] = {}


def register(method: Method[P, R]) -> Method[P, R]:
    """Add a method to the table (each name once) and return it."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


HELLO = register(
    Method(
        "hello",
        HelloParams,
        HelloResult,
        ANY_ROLE,
        "First request on a connection: negotiate the protocol version and fix the role.",
    )
)
PING = register(
    Method(
        "ping", PingParams, Pong, ANY_ROLE, "Liveness check; answers with server time and version."
    )
)
GATEWAY_INFO = register(
    Method(
        "gateway.info",
        Empty,
        GatewayInfo,
        ADMIN,
        "Version, pid, uptime, addresses and connection counts of the gateway.",
        users=OWNERS,
    )
)

# ---- runs and sessions ----------------------------------------------------------------

RUN_CREATE = register(
    Method(
        "run.create",
        runs.RunCreateParams,
        runs.RunCreated,
        CLIENTS,
        "Start a run (or steer the session's active run); says which happened.",
        users=MEMBERS,
    )
)
RUN_GET = register(Method("run.get", runs.RunGetParams, runs.RunInfo, CLIENTS, "One run."))
RUN_LIST = register(
    Method(
        "run.list",
        runs.RunListParams,
        runs.RunPage,
        CLIENTS,
        "Runs, newest first, by session and state.",
    )
)
RUN_EVENTS = register(
    Method(
        "run.events",
        runs.RunEventsParams,
        runs.EventPage,
        CLIENTS,
        "A page of a run's events after a seq.",
    )
)
ARTIFACT_GET = register(
    Method(
        "artifact.get",
        runs.ArtifactGetParams,
        runs.ArtifactChunk,
        CLIENTS,
        "A slice of an artifact, such as a large event payload (page with offset/limit).",
    )
)
RUN_SUBSCRIBE = register(
    Method(
        "run.subscribe",
        runs.RunSubscribeParams,
        runs.Subscribed,
        CLIENTS,
        "Follow a run or a session: backlog from the ledger, then live `run.event` notifications.",
    )
)
RUN_UNSUBSCRIBE = register(
    Method("run.unsubscribe", runs.UnsubscribeParams, Empty, CLIENTS, "Stop a subscription.")
)
RUN_CANCEL = register(
    Method(
        "run.cancel",
        runs.RunCancelParams,
        runs.RunInfo,
        CLIENTS,
        "Cancel a run: a queued run ends at once; an active one is stopped by its owner.",
        users=MEMBERS,
    )
)
SESSION_LIST = register(
    Method(
        "session.list", runs.SessionListParams, runs.SessionPage, CLIENTS, "Sessions, newest first."
    )
)
SESSION_GET = register(
    Method("session.get", runs.SessionGetParams, runs.SessionInfo, CLIENTS, "One session.")
)
CONSOLE_LINK = register(
    Method(
        "console.link",
        Empty,
        ConsoleLink,
        CLIENTS,
        "A one-time link (15 minutes) that logs a browser into the web console as the caller.",
    )
)
SESSION_HISTORY = register(
    Method(
        "session.history",
        runs.SessionHistoryParams,
        runs.SessionHistory,
        CLIENTS,
        "A session with its latest runs and their events, in one answer.",
    )
)
SESSION_UPDATE = register(
    Method(
        "session.update",
        runs.SessionUpdateParams,
        runs.SessionInfo,
        CLIENTS,
        "Set a session's agent, runner, workspace or mode (new runs use them).",
        users=MEMBERS,
    )
)
RUN_EVENT: Method[runs.RunEventNote, None] = register(
    Method(
        "run.event",
        runs.RunEventNote,
        None,
        FROM_GATEWAY,
        "Notification: one event of a subscription.",
    )
)
RUN_RESYNC: Method[runs.RunResyncNote, None] = register(
    Method(
        "run.resync",
        runs.RunResyncNote,
        None,
        FROM_GATEWAY,
        "Notification: a subscriber fell behind; subscribe again from the given cursor.",
    )
)

# ---- runners and tools ----------------------------------------------------------------

RUNNER_REGISTER = register(
    Method(
        "runner.register",
        runners.RunnerRegisterParams,
        runners.RunnerRegistered,
        RUNNERS,
        "A runner announces its tools, workspaces, agents, version and capacity.",
    )
)
RUNNER_HEARTBEAT = register(
    Method(
        "runner.heartbeat",
        runners.HeartbeatParams,
        runners.HeartbeatAck,
        RUNNERS,
        "A runner says it is alive and how busy; the answer acknowledges its notifications.",
    )
)
RUNNER_ACK: Method[runners.AckNote, None] = register(
    Method(
        "runner.ack",
        runners.AckNote,
        None,
        FROM_GATEWAY,
        "Notification: the gateway has the runner's notifications up to `acked`.",
    )
)
RUNNER_PROBE = register(
    Method(
        "runner.probe",
        Empty,
        Empty,
        FROM_GATEWAY,
        "Is this runner connection alive? (asked before another process may take its place).",
    )
)
TOOL_PROGRESS: Method[runners.ToolProgressNote, None] = register(
    Method(
        "tool.progress",
        runners.ToolProgressNote,
        None,
        RUNNERS,
        "Notification: output of a running tool call.",
    )
)
FILE_PULL = register(
    Method(
        "file.pull",
        runners.FilePullParams,
        runners.FileChunk,
        RUNNERS,
        "A slice of the file a running `put_file` call writes (a chat attachment).",
    )
)
FILE_PUSH = register(
    Method(
        "file.push",
        runners.FilePushParams,
        Empty,
        RUNNERS,
        "The next slice of the file a running `get_file` call hands over (`/send`).",
    )
)
TOOL_EXECUTE = register(
    Method(
        "tool.execute",
        runners.ToolExecuteParams,
        runners.ToolOutput,
        FROM_GATEWAY,
        "Run one tool call under a capability token (verified by the runner).",
    )
)
TOOL_CANCEL = register(
    Method(
        "tool.cancel", runners.ToolCancelParams, Empty, FROM_GATEWAY, "Stop a running tool call."
    )
)
RUNNER_ADD = register(
    Method(
        "runner.add",
        runners.RunnerAddParams,
        runners.RunnerAdded,
        ADMIN,
        "Create a runner (or rotate one) and return a one-time enrolment code.",
        users=OWNERS,
    )
)
RUNNER_LIST = register(
    Method("runner.list", Empty, runners.RunnerList, CLIENTS, "Runners with their status and load.")
)
RUNNER_REVOKE = register(
    Method(
        "runner.revoke",
        runners.RunnerRevokeParams,
        runners.RunnerInfo,
        ADMIN,
        "Revoke a runner: its credential stops working and it is disconnected at once.",
        users=OWNERS,
    )
)
TOOL_LIST = register(
    Method(
        "tool.list",
        runners.ToolListParams,
        runners.ToolList,
        CLIENTS,
        "The tools a connected runner offers, with their risk and params schema.",
    )
)
TOOL_CALL = register(
    Method(
        "tool.call",
        runners.ToolCallParams,
        runners.ToolCallResult,
        ADMIN,
        "Diagnostics: call a tool on a runner (with a capability token and the runner's policy).",
        users=OWNERS,
    )
)

# ---- hosted agents (gateway <-> runner) -------------------------------------------------

AGENT_START = register(
    Method(
        "agent.start",
        hosted.AgentStartParams,
        hosted.AgentStarted,
        FROM_GATEWAY,
        "Start a hosted agent's turn (under a capability token), or attach to the one the "
        "runner has and replay its events after `after`.",
    )
)
AGENT_STEER = register(
    Method(
        "agent.steer",
        hosted.AgentSteerParams,
        Empty,
        FROM_GATEWAY,
        "Add input to a hosted agent's running turn.",
    )
)
AGENT_INTERRUPT = register(
    Method(
        "agent.interrupt",
        hosted.AgentTurnParams,
        Empty,
        FROM_GATEWAY,
        "Interrupt a hosted agent's turn (its process is killed after a grace period).",
    )
)
AGENT_DONE = register(
    Method(
        "agent.done",
        hosted.AgentTurnParams,
        Empty,
        FROM_GATEWAY,
        "The gateway has recorded the turn's end: the runner forgets its events.",
    )
)
AGENT_STOP = register(
    Method(
        "agent.stop",
        hosted.AgentStopParams,
        Empty,
        FROM_GATEWAY,
        "Stop a session's hosted agent process (its thread can be resumed).",
    )
)
AGENT_ACK: Method[hosted.AgentAckNote, None] = register(
    Method(
        "agent.ack",
        hosted.AgentAckNote,
        None,
        FROM_GATEWAY,
        "Notification: the turn's events up to `n` are committed; the runner may drop them.",
    )
)
AGENT_EVENT: Method[hosted.AgentEventNote, None] = register(
    Method(
        "agent.event",
        hosted.AgentEventNote,
        None,
        RUNNERS,
        "Notification: event `n` of a hosted agent's turn.",
    )
)
AGENT_WITHDRAW: Method[hosted.AgentWithdrawNote, None] = register(
    Method(
        "agent.withdraw",
        hosted.AgentWithdrawNote,
        None,
        RUNNERS,
        "Notification: a hosted agent closed one of its requests itself; it is closed.",
    )
)
AGENT_PERMISSION = register(
    Method(
        "agent.permission",
        hosted.AgentPermissionParams,
        hosted.AgentPermissionAnswer,
        RUNNERS,
        "A hosted agent asks before it acts (a command, a file change, a question): "
        "answered by policy or a person, once per `request_key`.",
    )
)
AGENT_TOOL = register(
    Method(
        "agent.tool",
        hosted.AgentToolParams,
        hosted.AgentToolAnswer,
        RUNNERS,
        "A hosted agent asks its client for a file read or write or a command (ACP): run as "
        "a tool call of the run (policy, a person, a token), once per `request_key`.",
    )
)

# ---- users, requests and policy ----------------------------------------------------------

USER_ADD = register(
    Method(
        "user.add",
        access.UserAddParams,
        access.UserAdded,
        ADMIN,
        "Add a person with a role; the answer holds their login token (shown once).",
        users=OWNERS,
    )
)
USER_LIST = register(
    Method(
        "user.list", Empty, access.UserList, ADMIN, "Every user with role and status.", users=OWNERS
    )
)
USER_REVOKE = register(
    Method(
        "user.revoke",
        access.UserRevokeParams,
        access.UserInfo,
        ADMIN,
        "Revoke a user's login token; their open connections close at once.",
        users=OWNERS,
    )
)
REQUEST_LIST = register(
    Method(
        "request.list",
        access.RequestListParams,
        access.RequestList,
        CLIENTS,
        "Open requests (approvals and questions) the caller may decide.",
    )
)
REQUEST_RESOLVE = register(
    Method(
        "request.resolve",
        access.RequestResolveParams,
        access.RequestInfo,
        CLIENTS,
        "Decide an approval (allow once, allow for the session, deny) or answer a question; "
        "exactly one decision wins (a second gets `conflict`).",
        users=MEMBERS,
    )
)
POLICY_SHOW = register(
    Method(
        "policy.show",
        access.PolicyShowParams,
        access.PolicyView,
        CLIENTS,
        "The effective policy (of a session): rules in the order they apply, and the mode.",
    )
)
POLICY_EXPLAIN = register(
    Method(
        "policy.explain",
        access.PolicyExplainParams,
        access.PolicyExplained,
        CLIENTS,
        "Which rule decides a tool call, and why (nothing is run).",
    )
)

AGENT_LIST = register(
    Method(
        "agent.list",
        Empty,
        agents.AgentList,
        CLIENTS,
        "The agent backends this gateway offers (with manifests), and plugins it skipped and why.",
    )
)

# ---- conversations ------------------------------------------------------------------------

CHAT_SEND = register(
    Method(
        "chat.send",
        chat.ChatSendParams,
        chat.ChatSent,
        CLIENTS,
        "Say something in a conversation or session as a chat surface: a `/` command or "
        "input (a run, steering, or queued); deduplicated by `event_id`.",
    )
)
CONVERSATION_GET = register(
    Method(
        "conversation.get",
        chat.ConversationGetParams,
        chat.ConversationInfo,
        CLIENTS,
        "A conversation and its current session (to attach to it: `tether chat --conversation`).",
    )
)
USER_LINK = register(
    Method(
        "user.link",
        chat.UserLinkParams,
        chat.UserLinked,
        ADMIN,
        "Link a channel identity (a chat user's id) to a user: tether answers them as that user.",
        users=OWNERS,
    )
)
USER_UNLINK = register(
    Method(
        "user.unlink",
        chat.UserUnlinkParams,
        chat.UserLinked,
        ADMIN,
        "Remove a channel identity's link: tether stops answering it.",
        users=OWNERS,
    )
)
USER_PAIR = register(
    Method(
        "user.pair",
        chat.UserPairParams,
        chat.UserPairing,
        ADMIN,
        "A one-time pairing code: whoever sends `/pair CODE` from a chat is linked to the user.",
        users=OWNERS,
    )
)
DELIVERY_LIST = register(
    Method(
        "delivery.list",
        chat.DeliveryListParams,
        chat.DeliveryList,
        ADMIN,
        "Messages owed to chats (the outbox), oldest first: pending, delivered, given up.",
        users=OWNERS,
    )
)

# ---- routines -----------------------------------------------------------------------------

ROUTINE_ADD = register(
    Method(
        "routine.add",
        routines.RoutineAddParams,
        routines.RoutineInfo,
        CLIENTS,
        "Add a routine: a cron schedule (in a time zone) that starts a run in a session the "
        "caller may use, as the caller, at each due time.",
        users=MEMBERS,
    )
)
ROUTINE_LIST = register(
    Method(
        "routine.list",
        routines.RoutineListParams,
        routines.RoutineList,
        CLIENTS,
        "Routines with their next due time (a member's own; an owner's: all).",
    )
)
ROUTINE_PAUSE = register(
    Method(
        "routine.pause",
        routines.RoutineRef,
        routines.RoutineInfo,
        CLIENTS,
        "Pause a routine: it starts nothing until resumed.",
        users=MEMBERS,
    )
)
ROUTINE_RESUME = register(
    Method(
        "routine.resume",
        routines.RoutineRef,
        routines.RoutineInfo,
        CLIENTS,
        "Resume a paused routine from its next due time after now (what it missed is skipped).",
        users=MEMBERS,
    )
)
ROUTINE_REMOVE = register(
    Method(
        "routine.remove",
        routines.RoutineRef,
        routines.RoutineInfo,
        CLIENTS,
        "Remove a routine added through the API (one from the config is removed there).",
        users=MEMBERS,
    )
)
