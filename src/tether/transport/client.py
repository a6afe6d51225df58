"""Dialing the gateway: open a connection, do ``hello``, hand back an :class:`RpcClient`.

Used by the CLI (Unix socket or WebSocket) and the runner daemon (WebSocket). Failures
to connect are raised as tether errors with messages a person can act on:
``Unauthorized`` (HTTP 401), ``Overloaded`` (the gateway is full), ``ConnectionClosed``
(nobody listening), ``UnsupportedVersion`` and ``Forbidden`` (from ``hello``).

aiohttp is imported only by :func:`connect_ws`: a command that talks to the local Unix
socket starts without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tether import __version__
from tether.config import is_loopback_host
from tether.errors import (
    ConnectionClosed,
    Overloaded,
    PolicyDenied,
    TetherError,
    Unauthorized,
)
from tether.protocol.handshake import PROTOCOL_VERSIONS, HelloParams, HelloResult
from tether.protocol.methods import HELLO, Method
from tether.protocol.session import RpcSession
from tether.transport.connection import Connection, Router
from tether.transport.ipc import IpcConnection, IpcProtocol

if TYPE_CHECKING:
    import aiohttp

__all__ = ["RpcClient", "connect_ipc", "connect_ws", "http_url", "ws_url"]

log = logging.getLogger(__name__)
R = TypeVar("R")

DEFAULT_MAX_FRAME = 1024 * 1024


class RpcClient:
    """An established connection to the gateway (``hello`` done)."""

    def __init__(
        self,
        conn: Connection,
        hello: HelloResult,
        reader: asyncio.Task[None] | None,
        http: aiohttp.ClientSession | None = None,
        *,
        target: str = "",
    ) -> None:
        self.target = target
        self.conn = conn
        self.hello = hello
        self._reader = reader
        self._http = http

    async def call(self, method: Method[Any, R], params: Any, *, timeout: float | None = None) -> R:
        return await self.conn.call(method, params, timeout=timeout)

    def notify(self, method: Method[Any, Any], params: Any) -> None:
        self.conn.notify(method, params)

    @property
    def closed(self) -> bool:
        return self.conn.is_closing

    async def wait_closed(self) -> None:
        await self.conn.wait_closed()

    async def aclose(self) -> None:
        await self.conn.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _hello(conn: Connection, role: str, agent: str, timeout: float) -> HelloResult:
    params = HelloParams(protocol=list(PROTOCOL_VERSIONS), role=role, agent=agent)  # type: ignore[arg-type]
    try:
        result = await conn.call(HELLO, params, timeout=timeout)
    except TetherError:
        await conn.close()
        raise
    return result


async def connect_ipc(
    path: str,
    *,
    role: str = "admin",
    router: Router | None = None,
    agent: str = f"tether/{__version__}",
    timeout: float = 10.0,
    max_frame_bytes: int = DEFAULT_MAX_FRAME,
) -> RpcClient:
    """Connect to the gateway's Unix socket (the connection is ``admin`` unless asked otherwise)."""
    loop = asyncio.get_running_loop()
    holder: list[IpcConnection] = []

    def on_connect(transport: asyncio.Transport) -> IpcConnection:
        session: RpcSession[asyncio.Future[Any]] = RpcSession(
            local=role, peer="gateway", max_frame_bytes=max_frame_bytes
        )
        conn = IpcConnection(transport, session, router=router, request_timeout=timeout, name="ipc")
        holder.append(conn)
        return conn

    try:
        await asyncio.wait_for(
            loop.create_unix_connection(lambda: IpcProtocol(on_connect, max_frame_bytes), path),
            timeout,
        )
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ConnectionClosed(
            f"no gateway is listening on {path} (start one with `tether gateway` or `tether up`)"
        ) from exc
    except PermissionError as exc:
        raise Unauthorized(f"not allowed to open {path}: {exc.strerror}") from exc
    except TimeoutError as exc:
        raise ConnectionClosed(f"timed out connecting to {path}") from exc
    conn = holder[0]
    hello = await _hello(conn, role, agent, timeout)
    return RpcClient(conn, hello, None, target=path)


def _gateway_url(url: str, schemes: dict[str, str]) -> tuple[str, str, str]:
    parts = urlsplit(url)
    scheme = schemes.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"not a gateway URL: {url!r} (expected ws://, wss://, http:// or https://)"
        )
    return scheme, parts.netloc, parts.path.rstrip("/").removesuffix("/ws")


def ws_url(url: str) -> str:
    """Normalise ``http(s)://host:port`` or ``ws(s)://host:port[/ws]`` to the ``/ws`` endpoint."""
    scheme, netloc, path = _gateway_url(
        url, {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    )
    return urlunsplit((scheme, netloc, path + "/ws", "", ""))


def http_url(url: str) -> str:
    """The gateway's HTTP base (``http(s)://host:port``) for any form of its URL."""
    schemes = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
    scheme, netloc, path = _gateway_url(url, schemes)
    return urlunsplit((scheme, netloc, path, "", ""))


async def connect_ws(
    url: str,
    *,
    token: str,
    role: str,
    router: Router | None = None,
    agent: str = f"tether/{__version__}",
    timeout: float = 10.0,
    insecure: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME,
    send_queue_frames: int = 1024,
    max_inflight: int = 256,
) -> RpcClient:
    """Open a WebSocket to the gateway with a bearer token and do ``hello``.

    Plain ``ws://`` is allowed only to a loopback address unless ``insecure`` is set.
    """
    import aiohttp

    from tether.transport.websocket import WebSocketConnection

    target = ws_url(url)
    host = urlsplit(target).hostname or ""
    if target.startswith("ws://") and not insecure and not is_loopback_host(host):
        raise PolicyDenied(
            f"refusing plain ws:// to non-loopback host {host!r}: use wss:// (or --insecure)"
        )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
    try:
        ws = await http.ws_connect(
            target,
            headers={"Authorization": f"Bearer {token}"},
            compress=0,
            max_msg_size=max_frame_bytes * 2,
            decode_text=False,
            autoping=True,
            ssl=ssl_context if ssl_context is not None else True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
    except aiohttp.WSServerHandshakeError as exc:
        await http.close()
        if exc.status == 401:
            raise Unauthorized(f"the gateway at {target} rejected the token (HTTP 401)") from exc
        if exc.status == 503:
            raise Overloaded(
                f"the gateway at {target} is at its connection limit (HTTP 503)"
            ) from exc
        raise ConnectionClosed(
            f"WebSocket handshake with {target} failed: HTTP {exc.status}"
        ) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await http.close()
        raise ConnectionClosed(f"cannot reach the gateway at {target}: {exc}") from exc
    session: RpcSession[asyncio.Future[Any]] = RpcSession(
        local=role, peer="gateway", max_frame_bytes=max_frame_bytes
    )
    conn = WebSocketConnection(
        ws,
        session,
        router=router,
        request_timeout=timeout,
        send_queue_frames=send_queue_frames,
        max_inflight=max_inflight,
        name="ws",
    )
    reader = asyncio.get_running_loop().create_task(conn.run(), name="ws:reader")
    try:
        hello = await _hello(conn, role, agent, timeout)
    except BaseException:
        reader.cancel()
        await http.close()
        raise
    return RpcClient(conn, hello, reader, http, target=target)
