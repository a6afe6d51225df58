"""The composition root: the only module that wires the gateway's parts together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tether.config import Config
from tether.gateway.auth import AdminTokenAuthenticator, ChainAuthenticator, ensure_admin_token
from tether.gateway.dispatcher import Dispatcher
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.server import GatewayServer
from tether.gateway.system import SystemApi

__all__ = ["Gateway", "serve_gateway"]

log = logging.getLogger("tether.gateway")


class Gateway:
    """A whole gateway: server, dispatcher and services. Use ``async with`` or start/stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_path
        self.metrics = GatewayMetrics()
        self.dispatcher = Dispatcher()
        self.admin_token_path, self.admin_token_created = ensure_admin_token(self._data_dir())
        self.auth = ChainAuthenticator([AdminTokenAuthenticator(self.admin_token_path)])
        self.server = GatewayServer(config, self.auth, self.dispatcher, self.metrics)
        self.system = SystemApi(self.server)
        self.system.install(self.dispatcher)

    def _data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve_gateway(
    config: Config, *, on_ready: Callable[[Gateway], None] | None = None
) -> None:
    """Run a gateway until SIGTERM or SIGINT, then shut it down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(config)
    await gateway.start()
    try:
        log.info(
            "gateway ready",
            extra={"url": gateway.server.url, "socket": str(gateway.server.socket_path)},
        )
        if gateway.admin_token_created:
            log.info(
                "created the admin token (keep it secret; local commands do not need it)",
                extra={"path": str(gateway.admin_token_path)},
            )
        if on_ready is not None:
            on_ready(gateway)
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await gateway.stop()
    log.info("gateway stopped")
