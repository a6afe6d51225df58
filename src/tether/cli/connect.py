"""How commands reach the gateway: the local Unix socket, or ``--url`` with a token."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tether.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from tether.config import Config
    from tether.transport.client import RpcClient
    from tether.transport.connection import Router

__all__ = ["TokenOpt", "UrlOpt", "open_client", "request", "resolve_token"]

T = TypeVar("T")

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="Gateway URL (ws://, wss://, http://, https://). Default: the local Unix socket.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="Bearer token for --url (default: $TETHER_TOKEN, else this machine's admin token).",
        show_default=False,
    ),
]


def resolve_token(config: Config, token: str | None) -> str:
    """--token, else $TETHER_TOKEN, else the admin token file in the data dir."""
    if token:
        return token
    if os.environ.get("TETHER_TOKEN"):
        return os.environ["TETHER_TOKEN"]
    path = config.data_path / "admin.token"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise Unauthorized(
            "no token: pass --token, set TETHER_TOKEN, or run on the gateway's machine"
        ) from None


async def open_client(
    config: Config,
    url: str | None,
    token: str | None,
    *,
    role: str = "admin",
    router: Router | None = None,
) -> RpcClient:
    """Connect over WebSocket when ``url`` is given, else over the local Unix socket."""
    from tether.transport.client import connect_ipc, connect_ws

    timeout = config.limits.request_timeout
    if url:
        bearer = resolve_token(config, token)
        try:
            return await connect_ws(
                url,
                token=bearer,
                role=role,
                router=router,
                timeout=timeout,
                insecure=config.gateway.insecure,
                max_frame_bytes=config.limits.max_frame_bytes,
            )
        except Forbidden as exc:
            # a member's or viewer's login token: the same commands, as a client
            if role != "admin" or "client" not in (exc.data.get("allowed") or ()):
                raise
            return await connect_ws(
                url,
                token=bearer,
                role="client",
                router=router,
                timeout=timeout,
                insecure=config.gateway.insecure,
                max_frame_bytes=config.limits.max_frame_bytes,
            )
    return await connect_ipc(
        str(config.runtime_path / "gateway.sock"),
        role=role,
        router=router,
        timeout=timeout,
        max_frame_bytes=config.limits.max_frame_bytes,
    )


def request(url: str | None, token: str | None, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
    """Load the config, connect, run ``fn`` with the client, close: one command's talk."""
    from tether.cli import context

    config = context.current().config()

    async def go() -> T:
        async with await open_client(config, url, token) as client:
            return await fn(client)

    return context.run_async(go())
