"""The gateway's front door: an aiohttp app (``/ws``, ``/healthz``, ``/metrics``) and a Unix socket.

Every connection is authenticated before it is used (a bearer token checked before the
WebSocket upgrade; the peer uid on the Unix socket), counted against its transport's
limit, given a ``hello`` deadline and an idle timeout, and wrapped in a
:class:`~tether.gateway.peer.Peer` whose requests go through the :class:`MethodHandlers`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tether import __version__
from tether.config import Config, is_loopback_host, parse_listen
from tether.errors import ConfigError, Overloaded, Unauthorized
from tether.gateway.admission import Admission
from tether.gateway.auth import Authenticator, Principal, local_admin
from tether.gateway.fd_limit import fit_fd_limit, log_plan
from tether.gateway.handlers import MethodHandlers
from tether.gateway.http_errors import error_response
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.metrics_access import MetricsAccess, MetricsEndpoint
from tether.gateway.peer import Peer
from tether.gateway.runtime_dir import RuntimeDirLock, write_gateway_json
from tether.protocol.frame import encode_error
from tether.protocol.session import RpcSession
from tether.transport.connection import CloseCode, Connection
from tether.transport.ipc import IpcConnection, IpcProtocol, peer_uid
from tether.transport.websocket import WebSocketConnection

__all__ = ["GatewayServer"]

log = logging.getLogger(__name__)
access = logging.getLogger("tether.access")


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (so the real port is known when ``port`` is 0)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


class _Refusal:
    """Answers the first request of a refused connection with ``error``, then closes it.

    Answering the request (rather than writing and closing at once) lets the client see
    the real reason instead of a broken pipe.
    """

    def __init__(self, conn: Connection, error: Overloaded, linger: float) -> None:
        self.conn = conn
        self.error = error
        conn.router = self
        asyncio.get_running_loop().call_later(
            linger, conn.close_soon, CloseCode.TRY_AGAIN, "refused"
        )

    def route(self, method: Any) -> Any:
        return self._refuse

    def _refuse(self, params: Any) -> Any:
        self.conn.close_soon(CloseCode.TRY_AGAIN, "refused")
        raise self.error


class GatewayServer:
    """Listens, authenticates, enforces connection limits, and tracks every peer."""

    def __init__(
        self,
        config: Config,
        runtime: RuntimeDirLock,
        auth: Authenticator,
        handlers: MethodHandlers,
        metrics: GatewayMetrics,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.limits = config.limits
        self.auth = auth
        self.handlers = handlers
        self.metrics = metrics
        self.peers: dict[str, set[Peer]] = {"ws": set(), "ipc": set()}
        self.on_peer_closed: list[Callable[[Peer], None]] = []
        self.started_at = time.time()
        self.url = ""
        self.socket_path: Path = runtime.socket_path
        self.draining = False
        self._runner: web.AppRunner | None = None
        self._tcp: asyncio.Server | None = None
        self.admission: Admission | None = None
        self._max_tcp = 0
        self._unix: asyncio.AbstractServer | None = None
        self._seq = 0
        self._upgrading = 0
        """WebSocket upgrades between the limit check and the attach."""
        self._routes: list[
            tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
        ] = []
        self._loop = asyncio.get_running_loop()
        self._metrics_endpoint = MetricsEndpoint(
            MetricsAccess(config.gateway.metrics_networks, config.gateway.metrics_token),
            metrics,
        )

    # ---- lifecycle -----------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        gw = self.config.gateway
        if gw.tls_cert is None or gw.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(gw.tls_cert, gw.tls_key)
        return ctx

    cookie_auth: Callable[[web.Request], Awaitable[Principal | None]] | None = None
    """How a WebSocket upgrade without a bearer token may still be authenticated (the web
    console's cookie, see :mod:`tether.gateway.console_http`); None: it may not."""

    def add_route(
        self,
        method: str,
        path: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> None:
        """Serve an extra HTTP endpoint (add before :meth:`start`)."""
        self._routes.append((method, path, handler))

    async def start(self) -> None:
        """Bind the TCP listener and the Unix socket, then write ``gateway.json``."""
        host, port = parse_listen(self.config.gateway.listen)
        tls = self._ssl_context()

        self._fit_fd_limit()
        self.admission = Admission(
            max_connections=self._max_tcp,
            max_pending=self.limits.max_pending_connections,
            header_timeout=self.limits.header_timeout,
            metrics=self.metrics,
        )
        app = web.Application(
            client_max_size=self.limits.max_frame_bytes, middlewares=[self.admission.middleware]
        )
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_endpoint.handle)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        assert self._runner.server is not None
        listener = _listen_socket(host, port)
        # our own create_server (not web.SockSite): every connection passes Admission
        self._tcp = await self._loop.create_server(
            self.admission.protocol_factory(self._runner.server),
            sock=listener,
            ssl=tls,
            backlog=1024,
            ssl_handshake_timeout=self.limits.header_timeout if tls else None,
        )
        bound = int(listener.getsockname()[1])
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{bound}"

        old_umask = os.umask(0o177)
        try:
            self._unix = await self._loop.create_unix_server(
                lambda: IpcProtocol(self._on_ipc_connect, self.limits.max_frame_bytes),
                str(self.socket_path),
                backlog=128,
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        write_gateway_json(
            self.config.runtime_path,
            {
                "pid": os.getpid(),
                "url": self.url,
                "socket": str(self.socket_path),
                "version": __version__,
            },
        )
        if not is_loopback_host(host) and tls is None:
            log.warning(
                "LISTENING WITHOUT TLS ON A NON-LOOPBACK ADDRESS (--insecure): tokens and "
                "traffic cross the network in clear text",
                extra={"listen": self.config.gateway.listen},
            )

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close every peer, clean up."""
        self.draining = True
        if self._unix is not None:
            self._unix.close()
        if self._tcp is not None:
            self._tcp.close()
        if self.admission is not None:
            self.admission.close()
        peers = [p for group in self.peers.values() for p in group]
        grace = self.limits.shutdown_grace
        if peers:
            await asyncio.gather(*(p.conn.drain(grace) for p in peers))
            await asyncio.gather(
                *(p.conn.close(CloseCode.GOING_AWAY, "gateway shutting down") for p in peers),
                return_exceptions=True,
            )
        if self._runner is not None:
            await self._runner.cleanup()
        self.runtime.release()

    def _fit_fd_limit(self) -> None:
        fitted = fit_fd_limit(self.limits)
        self.limits = fitted.limits
        self._max_tcp = fitted.max_tcp
        self.metrics.fd_limit.set(fitted.soft)
        log_plan(fitted, log)

    # ---- connection bookkeeping ----------------------------------------------------

    def people(self) -> list[Principal]:
        """The people (not runners) connected now, after ``hello``."""
        return [
            p.principal
            for group in self.peers.values()
            for p in group
            if p.role is not None and p.principal.user_role is not None
        ]

    def connection_count(self, transport: str) -> int:
        return len(self.peers[transport])

    def _limit(self, transport: str) -> int:
        return (
            self.limits.max_ws_connections if transport == "ws" else self.limits.max_ipc_connections
        )

    def _new_session(self) -> RpcSession[asyncio.Future[Any]]:
        return RpcSession(local="gateway", peer=None, max_frame_bytes=self.limits.max_frame_bytes)

    def _conn_kwargs(self, transport: str) -> dict[str, Any]:
        self._seq += 1
        return {
            "send_queue_frames": self.limits.send_queue_frames,
            "max_inflight": self.limits.max_inflight_requests,
            "request_timeout": self.limits.request_timeout,
            "name": f"{transport}-{self._seq}",
        }

    def _attach(self, conn: Connection, peer: Peer) -> None:
        conn.router = peer
        conn.observer = self._observer(peer)
        conn.on_close = lambda _c: self._detach(peer)
        self.peers[peer.transport].add(peer)
        self.metrics.connections.labels(peer.transport).inc()
        self.metrics.accepted.labels(peer.transport).inc()
        self._loop.call_later(self.limits.hello_timeout, self._hello_deadline, peer)
        self._loop.call_later(self.limits.idle_timeout, self._idle_check, peer)
        log.debug(
            "= connected",
            extra={"conn": conn.name, "principal": peer.principal.id, "remote": peer.remote},
        )

    def _detach(self, peer: Peer) -> None:
        if peer in self.peers[peer.transport]:
            self.peers[peer.transport].discard(peer)
            self.metrics.connections.labels(peer.transport).dec()
            self.metrics.closed.labels(peer.transport, peer.conn.close_reason or "closed").inc()
            log.debug("= closed", extra={"conn": peer.conn.name, "reason": peer.conn.close_reason})
            for callback in self.on_peer_closed:
                callback(peer)

    def _observer(self, peer: Peer) -> Callable[[str, float, str], None]:
        metrics = self.metrics
        log_requests = self.config.gateway.access_log

        def observe(method: str, seconds: float, code: str) -> None:
            role = peer.role_name
            metrics.observe_request(method, role, seconds, code)
            if log_requests and access.isEnabledFor(logging.INFO):
                access.info(
                    method,
                    extra={
                        "conn": peer.conn.name,
                        "role": role,
                        "principal": peer.principal.id,
                        "latency_ms": round(seconds * 1000, 3),
                        "code": code,
                    },
                )

        return observe

    def _hello_deadline(self, peer: Peer) -> None:
        if peer.role is None and not peer.conn.is_closing:
            log.info("! no hello before the deadline; closing", extra={"conn": peer.conn.name})
            peer.conn.send_frame(
                encode_error(None, Unauthorized(f"no hello within {self.limits.hello_timeout:g} s"))
            )
            peer.conn.close_soon(CloseCode.POLICY, "hello_timeout")

    def _idle_check(self, peer: Peer) -> None:
        conn = peer.conn
        if conn.is_closing:
            return
        idle_for = time.monotonic() - conn.last_received
        remaining = self.limits.idle_timeout - idle_for
        if remaining > 0:
            self._loop.call_later(remaining, self._idle_check, peer)
            return
        log.info("! idle timeout; closing", extra={"conn": conn.name})
        conn.close_soon(CloseCode.GOING_AWAY, "idle_timeout")

    # ---- transports ----------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.draining:
            return error_response(Overloaded("the gateway is shutting down"))
        if {"token", "access_token", "auth"} & set(request.query):
            self.metrics.refused.labels("ws", "token_in_url").inc()
            return error_response(
                Unauthorized("tokens are never accepted in the URL; use the Authorization header")
            )
        token = _bearer(request)
        principal = await self.auth.authenticate(token) if token else None
        if principal is None and not token and self.cookie_auth is not None:
            # a browser (it cannot set headers on a WebSocket): its console cookie, and
            # only from the gateway's own origin
            principal = await self.cookie_auth(request)
        if principal is None:
            self.metrics.refused.labels("ws", "unauthorized").inc()
            reason = "missing bearer token" if not token else "invalid or revoked token"
            return error_response(
                Unauthorized(reason), headers={"WWW-Authenticate": 'Bearer realm="tether"'}
            )
        limit = self._limit("ws")
        # upgrades still in progress count too: the slot is held across the await below
        if self.connection_count("ws") + self._upgrading >= limit:
            self.metrics.refused.labels("ws", "limit").inc()
            return error_response(
                Overloaded(f"connection limit reached ({limit} WebSocket connections)")
            )
        ws = web.WebSocketResponse(
            compress=False,
            max_msg_size=self.limits.max_frame_bytes * 2,
            decode_text=False,
            autoping=True,
        )
        self._upgrading += 1
        try:
            await ws.prepare(request)
            conn = WebSocketConnection(ws, self._new_session(), **self._conn_kwargs("ws"))
            peer = Peer(
                conn, principal, self.handlers.lookup, transport="ws", remote=request.remote or ""
            )
            self._attach(conn, peer)
        finally:
            self._upgrading -= 1
        try:
            await conn.run()
        finally:
            self._detach(peer)
        return ws

    def _on_ipc_connect(self, transport: asyncio.Transport) -> IpcConnection | None:
        uid = peer_uid(transport)
        if uid != os.getuid():
            self.metrics.refused.labels("ipc", "peer_uid").inc()
            log.warning("! refused Unix-socket peer with another uid", extra={"peer_uid": uid})
            transport.close()
            return None
        limit = self._limit("ipc")
        conn = IpcConnection(transport, self._new_session(), **self._conn_kwargs("ipc"))
        if self.draining or self.connection_count("ipc") >= limit:
            self.metrics.refused.labels("ipc", "limit").inc()
            why = (
                "the gateway is shutting down"
                if self.draining
                else f"connection limit reached ({limit} local connections)"
            )
            _Refusal(conn, Overloaded(why), self.limits.hello_timeout)
            return conn
        peer = Peer(conn, local_admin(), self.handlers.lookup, transport="ipc", remote=f"uid:{uid}")
        self._attach(conn, peer)
        return conn

    # ---- plain HTTP ----------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        status = "draining" if self.draining else "ok"
        body = {
            "status": status,
            "version": __version__,
            "uptime": round(time.time() - self.started_at, 3),
        }
        return web.json_response(body, status=503 if self.draining else 200)
