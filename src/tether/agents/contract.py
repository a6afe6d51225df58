"""The contract between the orchestrator and an agent backend.

A backend drives one run: it reads the input, emits events through its
:class:`RunContext`, may mark the run waiting (for a person or a runner), pulls steering
input if it declares ``steering``, and returns an :class:`Outcome`. It must watch
``ctx.cancelled`` and return soon after it is set; a backend that does not is cancelled
hard after the grace period. A backend that declares ``resume`` is started again with
``ctx.resumed`` set after a gateway restart and can read what it did from
``ctx.history()``; other backends' interrupted runs end as ``failed``/``interrupted``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

import msgspec

from tether.protocol.events import RunEvent
from tether.protocol.runners import ToolInfo

__all__ = [
    "AgentBackend",
    "Capabilities",
    "Manifest",
    "Outcome",
    "PastEvent",
    "Permissions",
    "RunContext",
    "SessionSettings",
]


class Capabilities(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a backend can do. They describe; they grant nothing. Unknown keys are refused."""

    streaming: bool = False
    """Emits ``agent.delta`` while it writes."""
    steering: bool = False
    """Takes extra user input while a run is active (``ctx.take_steering()``)."""
    interrupt: bool = False
    """Stops its current step when asked, and can go on after."""
    resume: bool = False
    """Can continue a run after a gateway restart."""
    hosted: bool = False
    """Runs on a runner, next to the code (Codex, ACP agents)."""
    questions: bool = False
    """May ask its people questions (``ctx.ask``)."""
    fixture: bool = False
    """A test fixture, not an agent for people: only the principals and roles in
    ``[runs] fixture_principals`` / ``fixture_roles`` (default: ``admin``) may use it."""


class Permissions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The most a backend may ever use (an upper bound; policy still decides each call).
    Unknown keys are refused."""

    tools: list[str] = []
    """Tool names, risk classes (``read``, ``write``, ``exec``) or ``*`` for all."""
    workspaces: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Workspace names it may work in, or ``*``: the session's, whichever it is."""
    network: list[str] = []
    """A gateway-side agent's model endpoints (URLs); a hosted agent's sandbox network."""


Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who a backend is and what it may do. Plugins give one; tether checks it strictly."""

    id: Id
    """The agent's name in sessions and ``--agent`` (the entry point's name, for a plugin)."""
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    capabilities: Capabilities = Capabilities()
    permissions: Permissions = Permissions()
    config_schema: dict[str, Any] = {}
    """JSON schema of its config section (``[agents.<id>]``)."""
    commands: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]] = []
    """Words after ``/`` that are its own input (the operator's ``/read``): a chat passes
    them to it instead of answering "unknown command"."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["succeeded", "failed"]
    output: str | None = None
    """The final reply, if any."""
    reason: str | None = None
    """Why it failed (a short stable word, e.g. ``agent_error``)."""


class PastEvent(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    kind: str
    source: str
    payload: Any


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The settings of the session a run belongs to, as they were when it started."""

    agent: str
    runner: str | None
    """Runner id tool calls go to when they name none."""
    workspace: str | None
    mode: str
    """``auto-read``, ``ask`` or ``auto`` (how policy decides its tool calls)."""
    thread: str | None = None
    """A hosted agent's thread the session continues (Codex's thread id), if any."""


class RunContext(Protocol):
    """What a backend may do with the run it drives."""

    @property
    def settings(self) -> SessionSettings: ...

    @property
    def run_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def input(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def resumed(self) -> bool: ...

    @property
    def cancelled(self) -> asyncio.Event: ...

    async def emit(self, event: RunEvent) -> int:
        """Record one of the agent's events of the catalogue (``tether.protocol.events``:
        ``AgentMessage``, ``AgentDelta``, ``AgentStep``, ``AgentUsage``, ``AgentStatus``);
        returns its seq once committed. Other kinds are the gateway's or a runner's to
        record: ``invalid_params``."""
        ...

    async def set_waiting(self, waiting: bool, reason: str = "") -> None:
        """Move the run to ``waiting`` (True) or back to ``running`` (False)."""
        ...

    def take_steering(self) -> list[str]:
        """Pull every steering input received so far (oldest first)."""
        ...

    async def history(self) -> Sequence[PastEvent]:
        """Every event of this run so far, oldest first."""
        ...

    async def call_tool(
        self,
        *,
        runner: str,
        tool: str,
        args: dict[str, Any],
        workspace: str = "",
        timeout: float | None = None,
    ) -> Any:
        """Run a tool on a runner (by name or id) and return its JSON result.

        ``runner`` and ``workspace`` default to the session's. The call, its output and
        its outcome are recorded as run events; failures raise the matching
        :class:`~tether.errors.TetherError`. Policy decides every call first: a call it
        denies raises ``policy_denied``; one a person must allow waits (the run is
        ``waiting``) and raises ``approval_denied`` or ``approval_expired`` if they do not;
        in every such case the call did not run."""
        ...

    async def tools(self) -> list[ToolInfo]:
        """The tools this run may call on the session's runner (its authorization ∩ what
        the runner offers now), with their params' JSON schemas; empty when it is offline."""
        ...

    async def ask(
        self, question: str, choices: Sequence[str] = (), timeout: float | None = None
    ) -> str:
        """Ask the run's people a question and wait for the answer (free text, or one of
        ``choices``); raises ``approval_expired`` when nobody answers in time and
        ``approval_denied`` when the run stops meanwhile."""
        ...


class AgentBackend(Protocol):
    """A backend: its manifest (whose ``id`` is its ``name``) and what it does with a run."""

    name: str
    capabilities: Capabilities
    manifest: Manifest

    async def run(self, ctx: RunContext) -> Outcome: ...
