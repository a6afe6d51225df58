"""Placeholder package; its contract arrives with the agents and channels work."""

__all__: list[str] = []
