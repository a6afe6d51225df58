"""The gateway: server (WebSocket, Unix socket, HTTP), peers, dispatcher and services."""
