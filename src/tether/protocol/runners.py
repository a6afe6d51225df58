"""Params and results of runner methods: enrolment, registration, tool calls."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "TRANSFER_TOOLS",
    "AckNote",
    "EnrolRequest",
    "Enrolled",
    "FileChunk",
    "FilePullParams",
    "FilePushParams",
    "HeartbeatAck",
    "HeartbeatParams",
    "RunnerAddParams",
    "RunnerAdded",
    "RunnerInfo",
    "RunnerList",
    "RunnerRegisterParams",
    "RunnerRegistered",
    "RunnerRequest",
    "RunnerRevokeParams",
    "ToolCallParams",
    "ToolCallResult",
    "ToolCancelParams",
    "ToolExecuteParams",
    "ToolInfo",
    "ToolList",
    "ToolListParams",
    "ToolOutput",
    "ToolProgressNote",
]

Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ToolInfo(msgspec.Struct, kw_only=True):
    name: str
    summary: str
    risk: Literal["read", "write", "exec"]
    params_schema: dict[str, Any]
    path_params: list[str] = []
    """Params that name paths in the workspace (what policy path rules look at)."""


class RunnerRegisterParams(_Params):
    """Sent by a runner right after ``hello``: what it offers."""

    version: Annotated[str, msgspec.Meta(max_length=64)]
    boot_id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    """Random per runner process: calls sent to an earlier process are never re-sent."""
    tools: list[ToolInfo]
    workspaces: list[Annotated[str, msgspec.Meta(max_length=100)]]
    agents: list[str] = msgspec.field(default_factory=list)
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
    sandbox: str = ""


class RunnerRegistered(msgspec.Struct, kw_only=True):
    runner_id: str
    name: str
    heartbeat_interval: float
    acked: int = 0
    """The last sequenced notification of this runner process the gateway has: the runner
    replays what it sent after it (see ``tether.runner.gateway_link``)."""


class HeartbeatParams(_Params):
    inflight: Annotated[int, msgspec.Meta(ge=0)] = 0


class HeartbeatAck(msgspec.Struct, kw_only=True):
    acked: int = 0
    """As in :class:`RunnerRegistered`: the runner may forget what it sent up to here."""


class AckNote(_Params):
    """Gateway -> runner: it has the runner's notifications up to ``acked``."""

    acked: Annotated[int, msgspec.Meta(ge=0)]


class RunnerRequest(_Params):
    """Base of runner -> gateway requests that must be answered once across reconnects:
    the runner sends the same ``request_key`` again after a reconnect and gets the same
    answer (a hosted agent's permission request will be one)."""

    request_key: Annotated[str, msgspec.Meta(min_length=8, max_length=80)]


class ToolExecuteParams(_Params):
    """Gateway -> runner: run one tool call under a capability token."""

    call_id: Id
    tool: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: dict[str, Any]
    workspace: Annotated[str, msgspec.Meta(max_length=100)]
    token: str
    timeout: Seconds
    run_id: str = ""
    resend: bool = False
    """True when the gateway sends a call again after a reconnect (the runner attaches
    to it or returns its outcome; it never runs a call twice)."""


class ToolOutput(msgspec.Struct, kw_only=True):
    call_id: str
    result: msgspec.Raw
    duration: float


TRANSFER_TOOLS = frozenset({"put_file", "get_file"})
"""Tools only the gateway calls, for a chat's files (they move bytes only for a call it
makes): never part of an agent's authorization."""
FILE_CHUNK = 256 * 1024
"""Bytes in one slice of a file moved between the gateway and a runner (well inside a
frame once base64-encoded)."""


class FilePullParams(RunnerRequest):
    """Runner -> gateway, during a ``put_file`` call: the next slice of the file that call
    writes. Served only for that call, while it runs, to the runner it was sent to."""

    call_id: Id
    offset: Annotated[int, msgspec.Meta(ge=0)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=FILE_CHUNK)] = FILE_CHUNK


class FileChunk(msgspec.Struct, kw_only=True):
    data: bytes
    """In JSON a base64 string."""
    eof: bool


class FilePushParams(RunnerRequest):
    """Runner -> gateway, during a ``get_file`` call: the next slice of the file the call
    hands over, in order (``offset`` is what was pushed before)."""

    call_id: Id
    offset: Annotated[int, msgspec.Meta(ge=0)]
    data: Annotated[bytes, msgspec.Meta(max_length=FILE_CHUNK)]


class ToolProgressNote(_Params):
    """Runner -> gateway: output of a running call, as it is produced."""

    call_id: Id
    stream: Literal["stdout", "stderr"]
    text: str
    seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    """This runner process's sequence number (1, 2, …): kept until acknowledged and sent
    again after a reconnect; the gateway ignores numbers it already has."""


class ToolCancelParams(_Params):
    call_id: Id


class EnrolRequest(_Params):
    """``POST /enroll`` body: exchange a one-time code for a runner credential."""

    code: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    version: str = ""


class Enrolled(msgspec.Struct, kw_only=True):
    runner_id: str
    name: str
    credential: str
    gateway_public_key: str


class RunnerAddParams(_Params):
    name: Name
    rotate: bool = False
    """Re-issue a code for an existing runner (its old credential stops working)."""
    code_ttl: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 600.0


class RunnerAdded(msgspec.Struct, kw_only=True):
    runner_id: str
    name: str
    code: str
    expires_at: float
    command: str


class RunnerInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: Literal["pending", "enrolled", "revoked"]
    online: bool
    version: str | None
    workspaces: list[str]
    tools: list[str]
    agents: list[str]
    sandbox: str
    max_concurrency: int
    inflight: int
    created_at: float
    enrolled_at: float | None
    last_seen_at: float | None


class RunnerList(msgspec.Struct, kw_only=True):
    runners: list[RunnerInfo]


class RunnerRevokeParams(_Params):
    name: Name


class ToolCallParams(_Params):
    """Admin diagnostics: call a tool on a runner (still with a token and the runner's policy)."""

    runner: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    tool: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    workspace: Annotated[str, msgspec.Meta(max_length=100)] = ""
    timeout: Seconds | None = None
    ask: bool = False
    """Send the call through the approval path: it runs only once a person allows it."""


class ToolListParams(_Params):
    runner: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    """Runner name or id (connected)."""


class ToolList(msgspec.Struct, kw_only=True):
    runner: str
    tools: list[ToolInfo]
    """Each tool with its risk class and the JSON schema of its params."""


class ToolCallResult(msgspec.Struct, kw_only=True):
    call_id: str
    runner_id: str
    result: msgspec.Raw
    duration: float
