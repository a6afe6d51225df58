"""The gateway: server (WebSocket, Unix socket, HTTP), peers, handlers and services."""

__all__: list[str] = []
