"""asyncio I/O shells around :class:`tether.protocol.RpcSession`: WebSocket and Unix socket.

Shared by the gateway (server side), the runner and the CLI (client side). Imports the
protocol and the leaves only.
"""

from tether.transport.client import RpcClient, connect_ipc, connect_ws, ws_url
from tether.transport.connection import CloseCode, Connection, Handler, Router

__all__ = [
    "CloseCode",
    "Connection",
    "Handler",
    "Router",
    "RpcClient",
    "connect_ipc",
    "connect_ws",
    "ws_url",
]
