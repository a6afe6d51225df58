"""Agent backends: the contract, and the built-in ones (``operator``, ``codex`` hosted
on runners, and the ``script`` test fixture)."""

from tether.agents.contract import (
    AgentBackend,
    Capabilities,
    Manifest,
    Outcome,
    PastEvent,
    Permissions,
    RunContext,
)
from tether.agents.discovery import ENTRY_POINT_GROUP, Discovered, Skipped, discover
from tether.agents.hosted import ACP_AGENTS, CODEX, HostedAgent
from tether.agents.operator import OperatorAgent
from tether.agents.script import ScriptAgent
from tether.config import Config

__all__ = [
    "ENTRY_POINT_GROUP",
    "AgentBackend",
    "Capabilities",
    "Discovered",
    "HostedAgent",
    "Manifest",
    "OperatorAgent",
    "Outcome",
    "PastEvent",
    "Permissions",
    "RunContext",
    "ScriptAgent",
    "Skipped",
    "builtin",
    "configured",
    "discover",
]


def configured(config: Config) -> list[AgentBackend]:
    """The built-in backends that need configuration, where it is given."""
    out: list[AgentBackend] = []
    if config.agents.openai.model:
        from tether.agents.openai_chat import OpenAIAgent

        out.append(OpenAIAgent(config.agents.openai))
    return out


def builtin() -> dict[str, AgentBackend]:
    """The backends that need no configuration."""
    agents: list[AgentBackend] = [
        OperatorAgent(),
        ScriptAgent(),
        ScriptAgent("script-once", resume=False),
        HostedAgent(CODEX),
        *(HostedAgent(m) for m in ACP_AGENTS),
    ]
    return {a.name: a for a in agents}
