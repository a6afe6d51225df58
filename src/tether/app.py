"""The composition root: the only module that wires the gateway's parts together.

:class:`Gateway` claims the runtime directory, opens the ledger, and only then builds
every service that needs it (:class:`GatewayParts`, all fields set, nothing bound
later), starts the supervised loops and listens. The first unexpected failure of a
supervised part (see :mod:`tether.gateway.supervisor`) ends :meth:`Gateway.wait_failed`;
:func:`serve_gateway` then stops and raises it, so the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tether.agents import AgentBackend, Discovered, HostedAgent, builtin, configured, discover
from tether.channels import Channel
from tether.channels.feishu import FeishuChannel
from tether.channels.webhook import WebhookChannel
from tether.channels.webhook.config import secret_of
from tether.config import Config
from tether.gateway.access_api import AccessApi
from tether.gateway.agents_api import AgentsApi
from tether.gateway.auth import (
    AdminTokenAuthenticator,
    ChainAuthenticator,
    Principal,
    RunnerAuthenticator,
    UserAuthenticator,
    ensure_admin_token,
)
from tether.gateway.call_gate import CallGate
from tether.gateway.call_policy import CallPolicy
from tether.gateway.chat_api import ChatApi
from tether.gateway.chat_commands import ChatCommands
from tether.gateway.chat_files import ChatFiles
from tether.gateway.console_http import ConsoleHttp
from tether.gateway.console_pages import ConsolePages
from tether.gateway.console_session import ConsoleSessions, load_key
from tether.gateway.fanout import Fanout
from tether.gateway.handlers import MethodHandlers
from tether.gateway.hosted import HostedService
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.orchestrator import Orchestrator, default_node_id
from tether.gateway.outbox import Outbox
from tether.gateway.registry import RunnerRegistry
from tether.gateway.relay import ChannelRelay
from tether.gateway.requests import RequestBroker
from tether.gateway.retention import RetentionJob
from tether.gateway.router import ConversationRouter
from tether.gateway.routines import RoutineScheduler
from tether.gateway.routines_api import RoutinesApi
from tether.gateway.run_log import RunLog
from tether.gateway.runner_link import SocketRunnerLink
from tether.gateway.runners_api import RunnersApi
from tether.gateway.runs_api import RunsApi
from tether.gateway.runtime_dir import RuntimeDirLock, claim_runtime_dir
from tether.gateway.server import GatewayServer
from tether.gateway.supervisor import GatewayFailed, Supervisor
from tether.gateway.system_api import SystemApi
from tether.gateway.tools import ToolGateway
from tether.ledger import Ledger
from tether.security.capability import CapabilityIssuer, load_or_create_signing_key
from tether.security.file_modes import private_dir

SIGNING_KEY_FILE = "gateway.key"

__all__ = ["Gateway", "GatewayParts", "serve_gateway"]

log = logging.getLogger("tether.gateway")


@dataclass(frozen=True)
class GatewayParts:
    """Everything a started gateway is made of."""

    ledger: Ledger
    server: GatewayServer
    registry: RunnerRegistry
    link: SocketRunnerLink
    tools: ToolGateway
    gate: CallGate
    fanout: Fanout
    orchestrator: Orchestrator
    retention: RetentionJob
    handlers: MethodHandlers
    router: ConversationRouter
    outbox: Outbox
    relay: ChannelRelay
    routines: RoutineScheduler
    console: ConsoleHttp
    channels: dict[str, Channel]


def build_channels(config: Config, env: Mapping[str, str]) -> dict[str, Channel]:
    """The configured channels, by name. A webhook without a usable secret is built
    anyway, refusing every message (fail closed), and said so in the log."""
    channels: dict[str, Channel] = {}
    for name, hook in config.channels.webhook.items():
        secret, why = secret_of(hook, env)
        if secret is None:
            log.error(
                "! webhook channel has no secret: it refuses every message",
                extra={"channel": f"webhook.{name}", "why": why},
            )
        channel = WebhookChannel(name, hook, secret)
        channels[channel.name] = channel
    feishu = config.channels.feishu
    if feishu.enabled:
        app_secret = env.get(feishu.app_secret_env) or None
        if app_secret is None:
            log.error(
                "! feishu channel has no app secret: it connects to nothing and sends nothing",
                extra={"channel": "feishu", "env": feishu.app_secret_env},
            )
        token = env.get(feishu.verification_token_env) or None
        key = env.get(feishu.encrypt_key_env) or None
        if feishu.mode == "webhook" and (token is None or key is None):
            log.error(
                "! feishu webhook has no verification token or encrypt key: it refuses "
                "every request",
                extra={"channel": "feishu"},
            )
        channels[FeishuChannel.name] = FeishuChannel(
            feishu, app_secret, verification_token=token, encrypt_key=key
        )
    return channels


def _build(
    config: Config,
    ledger: Ledger,
    runtime: RuntimeDirLock,
    *,
    agents: Discovered,
    issuer: CapabilityIssuer,
    admin_token: Path,
    metrics: GatewayMetrics,
    supervisor: Supervisor,
) -> GatewayParts:
    handlers = MethodHandlers()
    auth = ChainAuthenticator(
        [
            AdminTokenAuthenticator(admin_token),
            UserAuthenticator(ledger),
            RunnerAuthenticator(ledger),
        ]
    )
    server = GatewayServer(config, runtime, auth, handlers, metrics)
    console = ConsoleHttp(
        ConsoleSessions(load_key(config.data_path), ledger),
        auth,
        public_url=config.gateway.public_url,
        secure_cookie=config.gateway.tls_cert is not None
        or (config.gateway.public_url or "").startswith("https:"),
        server_url=lambda: server.url,
    )
    for method, path, handler in [*console.routes(), *ConsolePages().routes()]:
        server.add_route(method, path, handler)
    server.cookie_auth = console.principal
    registry = RunnerRegistry()
    link = SocketRunnerLink(registry, config.limits)
    tools = ToolGateway(ledger, registry, link, issuer, config.limits)
    seen: dict[str, Principal] = {}
    requests = RequestBroker(
        ledger, config.policy, connected=lambda: [*server.people(), *seen.values()]
    )
    gate = CallGate(CallPolicy(ledger, config.policy), requests, tools)
    hosted = HostedService(
        ledger=ledger,
        registry=registry,
        link=link,
        tools=tools,
        gate=gate,
        issuer=issuer,
        config=config.runs,
    )
    for backend in agents.backends.values():
        if isinstance(backend, HostedAgent):
            backend.bind(hosted)
            hosted.agents.add(backend.name)
    fanout = Fanout()
    orchestrator = Orchestrator(
        RunLog(ledger, fanout),
        agents.backends,
        gate,
        config.runs,
        metrics,
        supervisor,
        node=config.runs.node_id or default_node_id(str(config.data_path)),
    )
    system = SystemApi(server)
    runs_api = RunsApi(
        ledger,
        orchestrator,
        fanout,
        metrics,
        page_bytes=max(16 * 1024, config.limits.max_frame_bytes * 3 // 8),
    )
    runners_api = RunnersApi(
        config,
        server=server,
        registry=registry,
        link=link,
        tools=tools,
        gate=gate,
        ledger=ledger,
        public_key=issuer.public_pem,
        metrics=metrics,
    )
    access_api = AccessApi(ledger, gate, runs_api, registry, server, config.runs.default_mode)
    agents_api = AgentsApi(agents, config.runs.default_agent)
    channels = build_channels(config, os.environ)
    outbox = Outbox(ledger, channels, config.channels, owner=orchestrator.owner)
    relay = ChannelRelay(
        ledger, outbox, config.channels.language, catch_up=config.channels.catch_up
    )
    fanout.add_all(relay)
    webhooks = config.channels.webhook
    router = ConversationRouter(
        ledger=ledger,
        orchestrator=orchestrator,
        config=config.channels,
        defaults={
            **{f"webhook.{n}": w.defaults for n, w in webhooks.items()},
            "feishu": config.channels.feishu.defaults,
        },
        overrides={
            **{f"webhook.{n}": w.conversations for n, w in webhooks.items()},
            "feishu": config.channels.feishu.conversations,
        },
        outbox=outbox,
        seen=seen,
        on_run_started=relay.started,
    )
    router.files = ChatFiles(
        ledger=ledger,
        gate=gate,
        tools=tools,
        outbox=outbox,
        channels=channels,
        config=config.channels,
        call_timeout=config.runner.default_timeout,
        retention_days=config.ledger.artifact_retention_days,
    )
    router.commands = ChatCommands(
        ledger=ledger,
        orchestrator=orchestrator,
        requests=requests,
        runs_api=runs_api,
        registry=registry,
        backends=agents.backends,
        router=router,
        files=router.files,
    )
    for channel in channels.values():
        for route in channel.routes(router):
            server.add_route(route.method, route.path, route.handler)  # type: ignore[arg-type]
    chat_api = ChatApi(ledger, router, runs_api, config.channels.pairing_ttl)
    routines = RoutineScheduler(ledger, router, config.routines)
    routines_api = RoutinesApi(ledger, runs_api, routines, config.routines)
    apis = (
        system,
        runs_api,
        runners_api,
        access_api,
        agents_api,
        hosted,
        chat_api,
        routines_api,
        console,
    )
    for api in apis:
        api.install(handlers)
    server.on_peer_closed += [runs_api.peer_closed, runners_api.peer_closed]
    runs_api.on_session_changed.append(hosted.session_changed)
    retention = RetentionJob(ledger, metrics, config.ledger.retention_interval)
    return GatewayParts(
        ledger=ledger,
        server=server,
        registry=registry,
        link=link,
        tools=tools,
        gate=gate,
        fanout=fanout,
        orchestrator=orchestrator,
        retention=retention,
        handlers=handlers,
        router=router,
        outbox=outbox,
        relay=relay,
        routines=routines,
        console=console,
        channels=channels,
    )


class Gateway:
    """A whole gateway. ``async with`` it, or :meth:`start` and :meth:`stop`."""

    def __init__(
        self, config: Config, *, backends: Mapping[str, AgentBackend] | None = None
    ) -> None:
        self.config = config
        self.data_dir = config.data_path
        if backends is not None:
            self.agents = Discovered(
                backends=dict(backends), sources=dict.fromkeys(backends, "given")
            )
        else:
            self.agents = discover([*builtin().values(), *configured(config)])
        self.backends = self.agents.backends
        self.metrics = GatewayMetrics()
        self.supervisor = Supervisor()
        data = private_dir(self.data_dir, "data directory")
        self.admin_token_path, self.admin_token_created = ensure_admin_token(data)
        self.issuer = CapabilityIssuer(load_or_create_signing_key(data / SIGNING_KEY_FILE))
        self._parts: GatewayParts | None = None
        self._runtime: RuntimeDirLock | None = None
        self._ledger: Ledger | None = None

    @property
    def parts(self) -> GatewayParts:
        if self._parts is None:
            raise RuntimeError("the gateway is not started")
        return self._parts

    @property
    def server(self) -> GatewayServer:
        return self.parts.server

    @property
    def registry(self) -> RunnerRegistry:
        return self.parts.registry

    @property
    def handlers(self) -> MethodHandlers:
        return self.parts.handlers

    @property
    def failure(self) -> GatewayFailed | None:
        """Why the gateway stopped on its own, if it did."""
        return self.supervisor.failure

    async def start(self) -> None:
        """Lock the runtime dir, open the ledger, build the parts, recover runs, listen."""
        config = self.config
        self._runtime = claim_runtime_dir(config.runtime_path)
        try:
            self._ledger = await Ledger.open(
                config.ledger,
                self.data_dir,
                on_fatal=lambda exc: self.supervisor.fail("ledger:writer", exc),
            )
            self._parts = _build(
                config,
                self._ledger,
                self._runtime,
                agents=self.agents,
                issuer=self.issuer,
                admin_token=self.admin_token_path,
                metrics=self.metrics,
                supervisor=self.supervisor,
            )
            await self._parts.orchestrator.start()
            self.supervisor.spawn("retention", self._parts.retention.loop())
            self.supervisor.spawn("relay", self._parts.relay.loop())
            self.supervisor.spawn("outbox", self._parts.outbox.loop())
            self.supervisor.spawn("router:sweep", self._parts.router.loop())
            await self._parts.routines.sync_config()
            await self._parts.server.start()
            await self._parts.router.start()
            for channel in self._parts.channels.values():
                await channel.start(self._parts.router)  # long connections dial out
            self.supervisor.spawn("routines", self._parts.routines.loop())
        except BaseException:
            await self.stop()
            raise

    async def wait_failed(self) -> GatewayFailed | None:
        """Return when a supervised part of the gateway died (the caller should stop)."""
        await self.supervisor.failed.wait()
        return self.supervisor.failure

    async def stop(self) -> None:
        """Stop listening and close connections, stop runs (leases released), close the
        ledger, release the runtime dir. Safe to call more than once."""
        parts = self._parts
        if parts is not None:
            await parts.server.stop()
            await parts.router.aclose()
        await self.supervisor.aclose()
        if parts is not None:
            await parts.orchestrator.aclose()
            await parts.relay.status.aclose()
            await parts.outbox.aclose()
        if self._ledger is not None:
            await self._ledger.aclose()
            self._ledger = None
        if self._runtime is not None:
            self._runtime.release()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve_gateway(
    config: Config,
    *,
    on_ready: Callable[[Gateway], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a gateway until ``stop`` is set (by default: until SIGTERM or SIGINT), then shut
    it down gracefully. A failure of a supervised part stops it too, and is raised."""
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
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
        await gateway.stop()  # a second signal meanwhile only sets ``stop`` again
        if own_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
    if gateway.failure is not None:
        raise gateway.failure
    log.info("gateway stopped")
