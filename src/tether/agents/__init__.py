"""Agent backends: the contract, and the built-in ones (``operator``, and the ``script``
test fixture)."""

from tether.agents.contract import AgentBackend, Capabilities, Outcome, PastEvent, RunContext
from tether.agents.operator import OperatorAgent
from tether.agents.script import ScriptAgent

__all__ = [
    "AgentBackend",
    "Capabilities",
    "OperatorAgent",
    "Outcome",
    "PastEvent",
    "RunContext",
    "ScriptAgent",
    "builtin",
]


def builtin() -> dict[str, AgentBackend]:
    """The backends that need no configuration."""
    agents: list[AgentBackend] = [
        OperatorAgent(),
        ScriptAgent(),
        ScriptAgent("script-once", resume=False),
    ]
    return {a.name: a for a in agents}
