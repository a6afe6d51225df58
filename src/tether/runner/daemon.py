"""``tether runner``: the daemon. Dials out to the gateway and serves tool calls.

Connects to the gateway's ``/ws`` with its credential, does ``hello`` (role ``runner``)
and ``runner.register``, heartbeats, and reconnects with exponential backoff and full
jitter (capped; reset after a healthy connection). A credential the gateway rejects
(revoked, unknown) stops the daemon with a clear error instead of retrying forever.
On SIGTERM it stops taking work, lets running calls finish within the grace period,
cancels the rest, and disconnects cleanly. A second process with the same credential
is refused by the gateway while the first is connected; the daemon then says so and
exits with code 4.

What it accepts from the gateway is its :class:`~tether.runner.routes.RouteTable`; what
it sends goes through its :class:`~tether.runner.gateway_link.GatewayLink` (tool output
is numbered, acknowledged, and replayed after a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from tether import __version__
from tether.errors import Conflict, PolicyDenied, TetherError, Unauthorized
from tether.protocol.methods import (
    AGENT_ACK,
    AGENT_DONE,
    AGENT_INTERRUPT,
    AGENT_START,
    AGENT_STEER,
    AGENT_STOP,
    FILE_PULL,
    FILE_PUSH,
    RUNNER_ACK,
    RUNNER_HEARTBEAT,
    RUNNER_PROBE,
    RUNNER_REGISTER,
    TOOL_CANCEL,
    TOOL_EXECUTE,
    TOOL_PROGRESS,
    Method,
)
from tether.protocol.runners import (
    FilePullParams,
    FilePushParams,
    HeartbeatParams,
    RunnerRegisterParams,
    ToolCancelParams,
    ToolExecuteParams,
    ToolInfo,
    ToolOutput,
    ToolProgressNote,
)
from tether.protocol.system import Empty
from tether.runner.agents.host import AgentHost
from tether.runner.executor import CallExecutor
from tether.runner.gateway_link import GatewayLink
from tether.runner.identity import RunnerIdentity
from tether.runner.routes import RouteTable
from tether.runner.tools.registry import describe
from tether.transport.client import RpcClient, connect_ws
from tether.transport.connection import Handler

__all__ = ["EXIT_DUPLICATE", "Backoff", "RunnerDaemon"]

log = logging.getLogger(__name__)

HEALTHY_AFTER = 10.0
"""A connection that stayed registered this long resets the backoff."""
EXIT_DUPLICATE = 4
"""Exit code when another process already runs with this runner's credential."""
FILE_WAIT = 60.0
"""Seconds a slice of a file transfer may take to reach the gateway and back."""


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return float(self._rng() * ceiling)

    def reset(self) -> None:
        self.attempt = 0


class RunnerDaemon:
    """See the module docstring. ``run()`` returns the process exit code."""

    def __init__(
        self,
        identity: RunnerIdentity,
        executor: CallExecutor,
        *,
        heartbeat_interval: float,
        shutdown_grace: float,
        reconnect_max_delay: float,
        insecure: bool = False,
        host: Callable[[GatewayLink, str], AgentHost] | None = None,
    ) -> None:
        """``host`` builds the agent host (from the link and this process's boot id)."""
        self.identity = identity
        self.executor = executor
        self.heartbeat_interval = heartbeat_interval
        self.shutdown_grace = shutdown_grace
        self.backoff = Backoff(cap=reconnect_max_delay)
        self.insecure = insecure
        self.boot_id = secrets.token_hex(8)
        self.client: RpcClient | None = None
        self.stop = asyncio.Event()
        self.registered = asyncio.Event()
        self.link = GatewayLink()
        self.routes = RouteTable()
        self.routes.add(TOOL_EXECUTE, self._execute)
        self.routes.add(TOOL_CANCEL, self._cancel)
        self.routes.add(RUNNER_PROBE, lambda _p: Empty())
        self.routes.add(RUNNER_ACK, lambda p: self.link.ack(p.acked))
        self.host = host(self.link, self.boot_id) if host is not None else None
        if self.host is not None:
            self.routes.add(AGENT_START, self.host.start)
            self.routes.add(AGENT_STEER, self.host.steer)
            self.routes.add(AGENT_INTERRUPT, self.host.interrupt)
            self.routes.add(AGENT_DONE, self.host.done)
            self.routes.add(AGENT_STOP, self.host.stop)
            self.routes.add(AGENT_ACK, self.host.ack)
        self.agents = self.host.available() if self.host is not None else []
        executor.progress = self._progress
        executor.files = self

    # ---- incoming calls ------------------------------------------------------------

    def route(self, method: Method[Any, Any]) -> Handler | None:
        return self.routes.route(method)

    async def _execute(self, params: ToolExecuteParams) -> ToolOutput:
        return await self.executor.execute(params)

    def _cancel(self, params: ToolCancelParams) -> Empty:
        self.executor.cancel(params.call_id)
        return Empty()

    def _progress(self, call_id: str, stream: str, text: str) -> None:
        kind: Literal["stdout", "stderr"] = "stderr" if stream == "stderr" else "stdout"
        self.link.send(
            TOOL_PROGRESS,
            lambda seq: ToolProgressNote(call_id=call_id, stream=kind, text=text, seq=seq),
        )

    # ---- file transfers (tether.runner.tools.transfer) ------------------------------

    async def pull(self, call_id: str, offset: int, limit: int) -> tuple[bytes, bool]:
        chunk = await self.link.request(
            FILE_PULL,
            FilePullParams(
                request_key=f"pull:{call_id}@{offset}", call_id=call_id, offset=offset, limit=limit
            ),
            deadline=time.monotonic() + FILE_WAIT,
        )
        return chunk.data, chunk.eof

    async def push(self, call_id: str, offset: int, data: bytes) -> None:
        await self.link.request(
            FILE_PUSH,
            FilePushParams(
                request_key=f"push:{call_id}@{offset}", call_id=call_id, offset=offset, data=data
            ),
            deadline=time.monotonic() + FILE_WAIT,
        )

    # ---- the connection loop -------------------------------------------------------

    def _register_params(self) -> RunnerRegisterParams:
        tools = [ToolInfo(**t) for t in describe()]
        return RunnerRegisterParams(
            version=__version__,
            boot_id=self.boot_id,
            tools=tools,
            workspaces=sorted(self.executor.workspaces),
            agents=self.agents,
            max_concurrency=self.executor.config.max_concurrency,
            sandbox=self.executor.sandbox.status,
        )

    async def run(self) -> int:
        while not self.stop.is_set():
            try:
                client = await connect_ws(
                    self.identity.gateway_url,
                    token=self.identity.credential,
                    role="runner",
                    router=self,
                    insecure=self.insecure,
                    agent=f"tether-runner/{__version__}",
                )
            except Unauthorized as exc:
                log.error(
                    "the gateway rejected this runner's credential (revoked or unknown); enrol again",
                    extra={"error": exc.message},
                )
                return 3
            except PolicyDenied as exc:  # e.g. plain ws:// to a remote host: retrying won't help
                log.error("! refusing to connect", extra={"error": exc.message})
                return 2
            except TetherError as exc:
                delay = self.backoff.next()
                log.warning(
                    "! cannot connect; retrying",
                    extra={"error": exc.message, "in_s": round(delay, 2)},
                )
                await self._sleep(delay)
                continue
            self.client = client
            self.link.opened(client)
            self.executor.frame_limit = client.hello.max_frame_bytes
            try:
                await self._serve(client)
            except Unauthorized as exc:
                log.error("the gateway refused this runner", extra={"error": exc.message})
                return 3
            except Conflict as exc:
                log.error("! %s", exc.message)
                return EXIT_DUPLICATE
            finally:
                self.client = None
                self.link.detach()
                self.registered.clear()
                await client.aclose()
            if not self.stop.is_set():
                delay = self.backoff.next()
                log.warning("! disconnected; reconnecting", extra={"in_s": round(delay, 2)})
                await self._sleep(delay)
        await self.executor.drain(self.shutdown_grace)  # calls left running while disconnected
        if self.host is not None:
            await self.host.aclose()
        return 0

    async def _serve(self, client: RpcClient) -> None:
        try:
            reg = await client.call(RUNNER_REGISTER, self._register_params())
        except (Unauthorized, Conflict):
            raise
        except TetherError as exc:
            log.warning("! registration failed", extra={"error": exc.message})
            return
        log.info("registered", extra={"runner": reg.name, "gateway": self.identity.gateway_url})
        self.link.attach(client, reg.acked)
        self.registered.set()
        since = time.monotonic()
        interval = min(self.heartbeat_interval, reg.heartbeat_interval)
        closed = asyncio.create_task(client.wait_closed(), name="runner:closed")
        stopping = asyncio.create_task(self.stop.wait(), name="runner:stop")
        try:
            while True:
                done, _ = await asyncio.wait(
                    {closed, stopping}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                if time.monotonic() - since >= HEALTHY_AFTER:
                    self.backoff.reset()
                if closed in done:
                    return
                if stopping in done:
                    await self._shutdown(client)
                    return
                try:
                    beat = await client.call(
                        RUNNER_HEARTBEAT,
                        HeartbeatParams(inflight=self.executor.inflight),
                        timeout=interval,
                    )
                    self.link.ack(beat.acked)
                except TetherError as exc:
                    log.warning("! heartbeat failed; reconnecting", extra={"error": exc.message})
                    return
        finally:
            closed.cancel()
            stopping.cancel()

    async def _shutdown(self, client: RpcClient) -> None:
        log.info("stopping: finishing running calls", extra={"inflight": self.executor.inflight})
        await self.executor.drain(self.shutdown_grace)
        await asyncio.sleep(0)  # let the handlers of cancelled calls send their replies
        await client.conn.drain(2.0)  # let the replies of finished calls go out

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
