"""Params and results of the ``user.*``, ``request.*`` and ``policy.*`` methods."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from tether.types import UserRole

__all__ = [
    "PolicyExplainParams",
    "PolicyExplained",
    "PolicyRuleInfo",
    "PolicyShowParams",
    "PolicyView",
    "RequestInfo",
    "RequestList",
    "RequestListParams",
    "RequestResolveParams",
    "UserAddParams",
    "UserAdded",
    "UserInfo",
    "UserList",
    "UserRevokeParams",
]

Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# ---- users -----------------------------------------------------------------------------


class UserAddParams(_Params):
    name: Name
    role: UserRole = "member"


class UserInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    role: UserRole
    status: str
    created_at: float
    revoked_at: float | None = None
    links: list[str] = []
    """Channel identities linked to them, as ``CHANNEL:ID``."""


class UserAdded(msgspec.Struct, kw_only=True):
    user: UserInfo
    token: str
    """The login token: shown once, stored only as a hash."""


class UserList(msgspec.Struct, kw_only=True):
    users: list[UserInfo]


class UserRevokeParams(_Params):
    user: Ref
    """Name or id."""


# ---- requests --------------------------------------------------------------------------


class RequestInfo(msgspec.Struct, kw_only=True):
    id: str
    handle: str
    kind: Literal["approval", "question"]
    state: str
    run_id: str | None
    session_id: str | None
    call_id: str | None
    summary: str
    """The question, or what the call would do, in one line."""
    plan: dict[str, Any]
    """Approvals: tool, runner, workspace, args, and for shell the commands, cwd and env."""
    choices: list[str]
    approvers: list[str]
    created_by: str | None
    created_at: float
    expires_at: float
    decision: str | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    answer: str | None = None


class RequestListParams(_Params):
    run_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    session_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class RequestList(msgspec.Struct, kw_only=True):
    requests: list[RequestInfo]


class RequestResolveParams(_Params):
    request: Ref
    """The request's id or its short handle."""
    decision: Literal["allow_once", "allow_session", "deny"] | None = None
    """For an approval."""
    answer: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    """For a question: free text, or one of its choices."""


# ---- policy ----------------------------------------------------------------------------


class PolicyShowParams(_Params):
    session_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class PolicyRuleInfo(msgspec.Struct, kw_only=True):
    decision: str
    source: str
    rule: str


class PolicyView(msgspec.Struct, kw_only=True):
    mode: str
    """The session's mode (or the default mode of new sessions)."""
    mode_table: dict[str, str]
    """What the mode decides per risk class when no rule matches."""
    rules: list[PolicyRuleInfo]
    """In the order they apply: the deny list, then rules, most specific first."""
    approvers: list[str]
    approval_timeout: float


class PolicyExplainParams(_Params):
    tool: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    session_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    workspace: Annotated[str, msgspec.Meta(max_length=100)] = ""
    risk: Literal["read", "write", "exec"] | None = None
    """The tool's risk class when no connected runner offers it."""


class PolicyExplained(msgspec.Struct, kw_only=True):
    decision: str
    source: str
    rule: str
    risk: str
    mode: str
    command: str | None = None
    commands: list[PolicyRuleInfo] = []
    """For shell: each simple command with its decision (``source`` holds the command)."""
    parsed: bool = True
