"""``tether gateway`` and ``tether up``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli import context
from tether.cli.help import examples
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.app import Gateway
    from tether.config import Config

__all__ = ["register"]

ListenOpt = Annotated[
    str | None,
    typer.Option(
        "--listen",
        metavar="HOST:PORT",
        help="HOST:PORT for HTTP and WebSocket (default 127.0.0.1:8765; port 0 picks a free one).",
    ),
]
CertOpt = Annotated[
    str | None,
    typer.Option("--tls-cert", metavar="FILE", help="PEM certificate (chain) for TLS."),
]
KeyOpt = Annotated[
    str | None, typer.Option("--tls-key", metavar="FILE", help="PEM private key for TLS.")
]
InsecureOpt = Annotated[
    bool | None,
    typer.Option(
        "--insecure/--no-insecure",
        help="Allow a non-loopback listen address without TLS (traffic in clear text).",
        show_default=False,
    ),
]


def load_gateway_config(
    listen: str | None, tls_cert: str | None, tls_key: str | None, insecure: bool | None
) -> Config:
    from tether.config import is_loopback_host, parse_listen

    cli = context.current()
    config = cli.config(
        **{
            "gateway.listen": listen,
            "gateway.tls_cert": tls_cert,
            "gateway.tls_key": tls_key,
            "gateway.insecure": insecure,
        }
    )
    host, _ = parse_listen(config.gateway.listen)
    if (
        not is_loopback_host(host)
        and config.gateway.tls_cert is None
        and not config.gateway.insecure
    ):
        raise ConfigError(
            f"refusing to listen on non-loopback address {config.gateway.listen} without TLS: "
            "give --tls-cert and --tls-key, or --insecure to accept clear text"
        )
    return config


def ready_line(gateway: Gateway) -> None:
    cli = context.current()
    server = gateway.server
    info = {
        "url": server.url,
        "ws": server.url.replace("http", "ws", 1) + "/ws",
        "socket": str(server.socket_path),
        "admin_token_file": str(gateway.admin_token_path),
    }
    cli.emit(
        info,
        f"tether gateway ready\n  url      {info['url']}\n  socket   {info['socket']}\n"
        f"  token    {info['admin_token_file']}",
    )


def gateway(
    listen: ListenOpt = None,
    tls_cert: CertOpt = None,
    tls_key: KeyOpt = None,
    insecure: InsecureOpt = None,
) -> None:
    """Run the gateway in the foreground until SIGTERM or Ctrl-C.

    Serves WebSocket JSON-RPC at /ws, /healthz and /metrics over HTTP, and a Unix socket
    for local commands. Writes <runtime dir>/gateway.json while it runs.
    """
    import asyncio

    from tether.cli.stop import StopSignals

    signals = StopSignals("still stopping: letting requests finish").install()
    config = load_gateway_config(listen, tls_cert, tls_key, insecure)
    from tether.app import serve_gateway

    async def go() -> None:
        stop = asyncio.Event()
        signals.bind(asyncio.get_running_loop(), stop.set)
        try:
            await serve_gateway(config, on_ready=ready_line, stop=stop)
        finally:
            signals.unbind()

    try:
        context.run_async(go())
    finally:
        signals.block()


GATEWAY_EPILOG = examples(
    "tether gateway",
    "tether gateway --listen 127.0.0.1:0",
    "tether gateway --listen 0.0.0.0:8765 --tls-cert cert.pem --tls-key key.pem",
    after="Exit status: 0 after SIGTERM or Ctrl-C; 1 when the gateway fails (another one "
    "already serves this runtime dir, the ledger cannot be opened, ...); 2 for a bad flag "
    "or config.",
)


def register(app: typer.Typer) -> None:
    app.command(name="gateway", epilog=GATEWAY_EPILOG)(gateway)
