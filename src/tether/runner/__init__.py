"""The runner daemon: connection loop, tools, local policy, sandbox."""
