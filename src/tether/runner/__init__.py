"""The runner daemon: the link to the gateway, its route table, tools, local policy, sandbox."""

__all__: list[str] = []
