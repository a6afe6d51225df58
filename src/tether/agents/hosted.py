"""Hosted agents: agent programs that run on the session's runner, next to the code.

A :class:`HostedAgent` is a backend whose work the gateway hands to a runner over the
runner link (``agent.*`` methods); the :class:`Host` that does it is the gateway's
(``tether.gateway.hosted``) and is bound when the gateway is built. Its manifest names
the agent's own actions (``shell`` for a command, ``apply_patch`` for a file change,
``agent_permissions`` for wider access, and for ACP agents the ``read_file`` and
``write_file`` they ask their client for): every one of them reaches tether's policy.
"""

from __future__ import annotations

from typing import Protocol

from tether import __version__
from tether.agents.contract import Capabilities, Manifest, Outcome, Permissions, RunContext

__all__ = ["ACP_AGENTS", "CODEX", "Host", "HostedAgent"]


class Host(Protocol):
    """Drives a hosted agent's turn on the session's runner."""

    async def drive(self, agent: str, ctx: RunContext) -> Outcome: ...


CODEX = Manifest(
    id="codex",
    version=__version__,
    label="Codex",
    description="OpenAI's Codex (`codex app-server`) on the session's runner, in its "
    "sandbox; every write it wants to make is decided by tether's policy or a person.",
    capabilities=Capabilities(
        streaming=True, steering=True, interrupt=True, resume=True, hosted=True, questions=True
    ),
    permissions=Permissions(tools=["shell", "apply_patch", "agent_permissions"]),
)


def _acp(agent: str, label: str, what: str) -> Manifest:
    return Manifest(
        id=agent,
        version=__version__,
        label=label,
        description=f"{what} on the session's runner over ACP, in its sandbox; what it asks "
        "to do is decided by tether's policy or a person, and the files and commands it asks "
        "its client for are tether tool calls.",
        capabilities=Capabilities(
            streaming=True, steering=False, interrupt=True, resume=True, hosted=True
        ),
        permissions=Permissions(
            tools=["shell", "apply_patch", "agent_permissions", "read_file", "write_file"]
        ),
    )


ACP_AGENTS = (
    _acp("claude", "Claude Code", "Claude Code (`@agentclientprotocol/claude-agent-acp`)"),
    _acp("gemini", "Gemini CLI", "Gemini CLI (`gemini --acp`)"),
    _acp("codex-acp", "Codex (ACP)", "Codex through `@zed-industries/codex-acp`"),
    _acp("acp", "ACP agent", "Any ACP agent the runner configures (`agents.acp.command`)"),
)
"""The ACP presets a runner can host (docs/agents.md)."""


class HostedAgent:
    """A backend that runs on a runner (see the module docstring)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.name = manifest.id
        self.capabilities = manifest.capabilities
        self.host: Host | None = None

    def bind(self, host: Host) -> None:
        self.host = host

    async def run(self, ctx: RunContext) -> Outcome:
        if self.host is None:
            return Outcome(
                state="failed", reason="agent_error", output="this gateway cannot host agents"
            )
        return await self.host.drive(self.name, ctx)
