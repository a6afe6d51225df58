"""A run's authorization: the most it may ever use, frozen when it starts.

It is the agent's manifest permissions ∩ the session's runner and workspace ∩ the tools
that runner offers (as it last registered, so an offline runner still counts), computed
once, stored with the run, and read back (never recomputed) when the run is resumed.
A hosted agent (Codex) gets the actions its manifest names, on a runner that hosts it.
Every tool call is checked against it before policy decides: outside it, the call is
refused with ``capability_denied``. Test fixtures (``script``) are not limited by it;
policy and the runners still are.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tether.protocol.runners import TRANSFER_TOOLS

__all__ = ["Authorization", "freeze"]


class Authorization(msgspec.Struct, frozen=True, kw_only=True):
    any: bool = False
    """A test fixture: no limit here (policy and the runner still decide)."""
    runner_id: str | None = None
    workspaces: list[str] = []
    tools: list[str] = []
    network: list[str] = []
    """Endpoints a gateway-side agent may call (its models)."""

    def refusal(self, runner_id: str, tool: str, workspace: str) -> str | None:
        """Why a call is outside this authorization, or None when it is inside."""
        if self.any:
            return None
        if self.runner_id is None or runner_id != self.runner_id:
            return "the run may use only its session's runner (as it was when the run started)"
        if workspace not in self.workspaces:
            allowed = ", ".join(self.workspaces) or "none"
            return (
                f"the run may work only in its session's workspace ({allowed}), not {workspace!r}"
            )
        if tool not in self.tools:
            return f"the agent's manifest does not allow the tool {tool!r}"
        return None


def freeze(
    manifest: Any, *, runner_id: str | None, workspace: str | None, offered: dict[str, Any]
) -> Authorization:
    """Compute the authorization of a run of the agent with ``manifest`` (None: nothing)
    on the session's runner (``offered``: what it last registered)."""
    if manifest is None:
        return Authorization()
    if manifest.capabilities.fixture:
        return Authorization(any=True)
    if runner_id is None:
        return Authorization(network=list(manifest.permissions.network))
    perms = manifest.permissions
    runner_spaces = list(offered.get("workspaces") or [])
    candidates = [workspace] if workspace else runner_spaces
    spaces = [w for w in candidates if "*" in perms.workspaces or w in perms.workspaces]
    if manifest.capabilities.hosted:
        # a hosted agent's actions are its own (a command, a file change), named in its
        # manifest; it has them only on a runner that hosts it
        hosts = manifest.id in (offered.get("agents") or [])
        return Authorization(
            runner_id=runner_id,
            workspaces=spaces,
            tools=sorted(t for t in perms.tools if t != "*") if hosts else [],
            network=list(perms.network),
        )
    risks: dict[str, str] = dict(offered.get("tool_risks") or {})
    for name in offered.get("tools") or []:
        risks.setdefault(name, "exec")  # registered before risks were kept: the strictest
    tools = sorted(
        name
        for name, risk in risks.items()
        if ("*" in perms.tools or name in perms.tools or risk in perms.tools)
        and name not in TRANSFER_TOOLS
    )
    return Authorization(
        runner_id=runner_id, workspaces=spaces, tools=tools, network=list(perms.network)
    )
