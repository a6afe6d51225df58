"""Params and results of ``agent.list``."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["AgentInfo", "AgentList", "SkippedAgent"]


class AgentInfo(msgspec.Struct, kw_only=True):
    id: str
    version: str
    label: str
    description: str
    source: str
    """``builtin``, or the plugin's entry point (``module:attribute``)."""
    capabilities: dict[str, bool]
    permissions: dict[str, list[str]]
    config_schema: dict[str, Any] = {}


class SkippedAgent(msgspec.Struct, kw_only=True):
    name: str
    source: str
    reason: str


class AgentList(msgspec.Struct, kw_only=True):
    agents: list[AgentInfo]
    skipped: list[SkippedAgent]
    """Plugins that could not be loaded, and why."""
    default: str
    """The agent of a new session."""
