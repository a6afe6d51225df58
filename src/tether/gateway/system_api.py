"""Handlers of the connection-level methods: ``hello``, ``ping`` and ``gateway.info``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tether import __version__
from tether.errors import Forbidden
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.server import GatewayServer
from tether.protocol.handshake import HelloParams, HelloResult, negotiate
from tether.protocol.methods import GATEWAY_INFO, HELLO, PING
from tether.protocol.system import Empty, GatewayInfo, PingParams, Pong, TransportInfo

__all__ = ["SystemApi", "ledger_engine"]


class SystemApi:
    """``hello`` fixes a connection's role; ``ping`` and ``gateway.info`` describe the gateway."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.on_hello: list[Callable[[Peer], None]] = []

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(HELLO, self.hello)
        handlers.add(PING, self.ping)
        handlers.add(GATEWAY_INFO, self.info)

    def hello(self, peer: Peer, params: HelloParams) -> HelloResult:
        version = negotiate(params.protocol)
        if params.role not in peer.principal.roles:
            allowed = ", ".join(sorted(r.value for r in peer.principal.roles))
            raise Forbidden(
                f"this credential may connect as {allowed}, not as {params.role.value}",
                data={"allowed": sorted(r.value for r in peer.principal.roles)},
            )
        peer.role = params.role
        peer.protocol = version
        peer.agent = params.agent
        peer.conn.session.establish(params.role.value)
        for callback in self.on_hello:
            callback(peer)
        limits = self.server.limits
        return HelloResult(
            protocol=version,
            role=params.role,
            principal=peer.principal.id,
            server=f"tether/{__version__}",
            max_frame_bytes=limits.max_frame_bytes,
            idle_timeout=limits.idle_timeout,
            user_role=peer.principal.user_role,
        )

    def ping(self, peer: Peer, params: PingParams) -> Pong:
        return Pong(server_time=time.time(), version=__version__, payload=params.payload)

    def info(self, peer: Peer, params: Empty) -> GatewayInfo:
        server = self.server
        now = time.time()
        return GatewayInfo(
            version=__version__,
            protocol=peer.protocol,
            pid=os.getpid(),
            started_at=server.started_at,
            uptime=now - server.started_at,
            url=server.url,
            socket=str(server.socket_path),
            data_dir=server.config.data_dir or "",
            transports=[
                TransportInfo(
                    name="ws",
                    address=server.url,
                    connections=server.connection_count("ws"),
                    max_connections=server.limits.max_ws_connections,
                ),
                TransportInfo(
                    name="ipc",
                    address=str(server.socket_path),
                    connections=server.connection_count("ipc"),
                    max_connections=server.limits.max_ipc_connections,
                ),
            ],
            ledger=ledger_engine(server.config.ledger.database_url),
        )


def ledger_engine(database_url: str | None) -> str:
    """``sqlite`` (the default, in the data dir) or the URL's database, ``postgresql``."""
    if not database_url:
        return "sqlite"
    scheme = database_url.split(":", 1)[0]
    return scheme.split("+", 1)[0] or "sqlite"
