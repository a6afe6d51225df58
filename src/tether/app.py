"""The composition root: the only module that wires the gateway's parts together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from tether.agents import AgentBackend, builtin
from tether.config import Config
from tether.gateway.auth import (
    AdminTokenAuthenticator,
    ChainAuthenticator,
    RunnerAuthenticator,
    ensure_admin_token,
)
from tether.gateway.fanout import Fanout
from tether.gateway.handlers import MethodHandlers
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.orchestrator import Orchestrator, default_node_id
from tether.gateway.registry import RunnerRegistry
from tether.gateway.retention import RetentionJob
from tether.gateway.runners_api import RunnersApi
from tether.gateway.runs_api import RunsApi
from tether.gateway.server import GatewayServer
from tether.gateway.system_api import SystemApi
from tether.gateway.tools import ToolDispatcher
from tether.ledger import Ledger
from tether.security.capability import CapabilityIssuer, load_or_create_signing_key
from tether.security.file_modes import private_dir

SIGNING_KEY_FILE = "gateway.key"

__all__ = ["Gateway", "serve_gateway"]

log = logging.getLogger("tether.gateway")


class Gateway:
    """A whole gateway: ledger, orchestrator, server and services. ``async with`` or start/stop."""

    def __init__(
        self, config: Config, *, backends: Mapping[str, AgentBackend] | None = None
    ) -> None:
        self.config = config
        self.data_dir = config.data_path
        self.backends = dict(backends) if backends is not None else builtin()
        self.metrics = GatewayMetrics()
        self.handlers = MethodHandlers()
        self.admin_token_path, self.admin_token_created = ensure_admin_token(self._data_dir())
        self.auth = ChainAuthenticator([AdminTokenAuthenticator(self.admin_token_path)])
        self.server = GatewayServer(config, self.auth, self.handlers, self.metrics)
        self.fanout = Fanout()
        self.system = SystemApi(self.server)
        self.system.install(self.handlers)
        self.runs_api = RunsApi()
        self.runs_api.install(self.handlers)
        self.server.on_peer_closed.append(self.runs_api.peer_closed)
        self.registry = RunnerRegistry()
        self.runners_api = RunnersApi(config, self.server, self.registry, self.metrics)
        self.runners_api.install(self.handlers)
        self.server.on_peer_closed.append(self.runners_api.peer_closed)
        self.issuer = CapabilityIssuer(load_or_create_signing_key(self.data_dir / SIGNING_KEY_FILE))
        self.tools: ToolDispatcher | None = None
        self.ledger: Ledger | None = None
        self.orchestrator: Orchestrator | None = None
        self.retention: RetentionJob | None = None
        self.failure: BaseException | None = None
        self._stopped = asyncio.Event()

    def _data_dir(self) -> Path:
        """The data dir, 0700 and ours (an existing looser one is tightened)."""
        return private_dir(self.data_dir, "data directory")

    async def start(self) -> None:
        """Lock the runtime dir, open the ledger, recover runs, then listen."""
        self.server.claim_runtime_dir()
        try:
            self.ledger = await Ledger.open(self.config.ledger, self.data_dir)
            self.auth.sources.append(RunnerAuthenticator(self.ledger))
            self.tools = ToolDispatcher(self.ledger, self.registry, self.issuer, self.config.limits)
            self.runners_api.bind(self.ledger, self.tools, self.issuer.public_pem)
            node = self.config.runs.node_id or default_node_id(str(self.data_dir))
            self.orchestrator = Orchestrator(
                self.ledger,
                self.backends,
                self.fanout,
                self.config.runs,
                self.metrics,
                node=node,
                on_fatal=self._fatal,
                tools=self.tools,
            )
            self.runs_api.bind(self.ledger, self.orchestrator, self.fanout, self.metrics)
            await self.orchestrator.start()
            self.retention = RetentionJob(
                self.ledger, self.metrics, self.config.ledger.retention_interval
            )
            self.retention.start()
            await self.server.start()
        except BaseException:
            await self.stop()
            raise

    def _fatal(self, exc: BaseException) -> None:
        self.failure = exc
        self._stopped.set()

    async def wait_failed(self) -> BaseException | None:
        """Return when a supervised part of the gateway died (the caller should stop)."""
        await self._stopped.wait()
        return self.failure

    async def stop(self) -> None:
        """Stop listening and close connections, stop runs (leases released), close the ledger."""
        await self.server.stop()
        if self.retention is not None:
            await self.retention.aclose()
        if self.orchestrator is not None:
            await self.orchestrator.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
            self.ledger = None

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
    try:
        await gateway.start()
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
        stopping = asyncio.create_task(stop.wait(), name="gateway:signal")
        failing = asyncio.create_task(gateway.wait_failed(), name="gateway:failure")
        await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        failing.cancel()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await gateway.stop()
    if gateway.failure is not None:
        raise gateway.failure
    log.info("gateway stopped")
