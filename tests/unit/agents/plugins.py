"""Agent plugins for the discovery tests: one good, the rest broken in different ways."""

from __future__ import annotations

from typing import Any

from tether.agents import Capabilities, Manifest, Outcome, RunContext
from tether.protocol.events import AgentMessage


class Echo:
    """A well-formed plugin (its manifest as a dict, as a plugin without tether types may)."""

    def __init__(self) -> None:
        self.name = "echo"
        self.manifest: Any = {
            "id": "echo",
            "version": "1.2.3",
            "label": "Echo",
            "capabilities": {"streaming": True},
            "permissions": {"tools": ["read"], "network": []},
        }

    async def run(self, ctx: RunContext) -> Outcome:
        await ctx.emit(AgentMessage(text=f"echo: {ctx.input}"))
        return Outcome(state="succeeded", output=f"echo: {ctx.input}")


class UnknownCapability(Echo):
    def __init__(self) -> None:
        super().__init__()
        self.manifest = {**self.manifest, "id": "unknown-cap", "capabilities": {"telepathy": True}}


class UnknownPermission(Echo):
    def __init__(self) -> None:
        super().__init__()
        self.manifest = {**self.manifest, "id": "unknown-perm", "permissions": {"root": ["*"]}}


class WrongId(Echo):
    pass  # its manifest says "echo"


class NoRun:
    def __init__(self) -> None:
        self.manifest = Manifest(id="no-run", version="1", label="x")


class Fixture(Echo):
    def __init__(self) -> None:
        super().__init__()
        self.manifest = Manifest(
            id="fixture", version="1", label="x", capabilities=Capabilities(fixture=True)
        )


def explodes() -> Any:
    raise RuntimeError("no config for me")


NOT_CALLABLE = 42
