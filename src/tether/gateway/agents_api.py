"""Handler of ``agent.list``: the backends a gateway offers, and the plugins it skipped."""

from __future__ import annotations

import msgspec

from tether.agents import Discovered
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.protocol import methods as m
from tether.protocol.agents import AgentInfo, AgentList, SkippedAgent
from tether.protocol.system import Empty

__all__ = ["AgentsApi"]


class AgentsApi:
    def __init__(self, discovered: Discovered, default_agent: str) -> None:
        self.discovered = discovered
        self.default_agent = default_agent

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.AGENT_LIST, self.list)

    def list(self, peer: Peer, p: Empty) -> AgentList:
        found = self.discovered
        agents = []
        for name in sorted(found.backends):
            manifest = getattr(found.backends[name], "manifest", None)
            if manifest is None:  # a backend handed in by code that has none (tests)
                continue
            agents.append(
                AgentInfo(
                    id=manifest.id,
                    version=manifest.version,
                    label=manifest.label,
                    description=manifest.description,
                    source=found.sources.get(name, "builtin"),
                    capabilities=msgspec.to_builtins(manifest.capabilities),
                    permissions=msgspec.to_builtins(manifest.permissions),
                    config_schema=manifest.config_schema,
                )
            )
        skipped = [
            SkippedAgent(name=s.name, source=s.source, reason=s.reason) for s in found.skipped
        ]
        return AgentList(agents=agents, skipped=skipped, default=self.default_agent)
