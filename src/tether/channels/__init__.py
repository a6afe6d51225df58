"""Placeholder package; its contract arrives with the agents and channels work."""
