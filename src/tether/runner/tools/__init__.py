"""The runner's tools: file access, search and shell commands, confined to a workspace."""

__all__: list[str] = []
