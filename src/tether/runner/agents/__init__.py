"""Hosted agents: agent programs the runner runs next to the code (Codex)."""
