"""The gateway: server (WebSocket, Unix socket, HTTP), peers, handlers and services."""
