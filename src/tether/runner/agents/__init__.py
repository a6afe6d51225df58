"""Hosted agents: agent programs the runner runs next to the code (Codex)."""

__all__: list[str] = []
