"""Handlers for runners: enrolment (HTTP), registration, heartbeats, admin and tool calls."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from tether.errors import Forbidden, RunnerOffline, TetherError, Unauthorized
from tether.gateway.handlers import MethodHandlers
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.peer import Peer
from tether.gateway.rate_limit import KeyedLimiter
from tether.gateway.registry import RunnerRegistry
from tether.gateway.tools import ToolDispatcher
from tether.ledger import Ledger
from tether.ledger.runners import RunnerRecord
from tether.protocol import methods as m
from tether.protocol.runners import (
    Enrolled,
    EnrolRequest,
    HeartbeatParams,
    RunnerAdded,
    RunnerAddParams,
    RunnerInfo,
    RunnerList,
    RunnerRegistered,
    RunnerRegisterParams,
    RunnerRevokeParams,
    ToolCallParams,
    ToolCallResult,
    ToolProgressNote,
)
from tether.protocol.system import Empty
from tether.security.credentials import (
    hash_secret,
    new_enrolment_code,
    new_secret,
    normalize_code,
    runner_credential,
)
from tether.security.redaction import redact, redact_value

if TYPE_CHECKING:
    from tether.config import Config
    from tether.gateway.server import GatewayServer

__all__ = ["RunnersApi"]

log = logging.getLogger(__name__)

_ENROL_MAX_BYTES = 4096


class RunnersApi:
    """Runner-facing and admin-facing runner methods."""

    def __init__(
        self,
        config: Config,
        server: GatewayServer,
        registry: RunnerRegistry,
        metrics: GatewayMetrics,
    ) -> None:
        self.config = config
        self.server = server
        self.registry = registry
        self.metrics = metrics
        limits = config.limits
        self.enroll_limiter = KeyedLimiter(
            rate=limits.enroll_rate,
            burst=limits.enroll_burst,
            total_rate=limits.enroll_total_rate,
            total_burst=limits.enroll_total_burst,
        )
        self.ledger: Ledger | None = None
        self.tools: ToolDispatcher | None = None
        self.public_key = ""
        self._side: set[asyncio.Task[None]] = set()

    def bind(self, ledger: Ledger, tools: ToolDispatcher, public_key: str) -> None:
        self.ledger, self.tools, self.public_key = ledger, tools, public_key

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.RUNNER_REGISTER, self.register)
        handlers.add(m.RUNNER_HEARTBEAT, self.heartbeat)
        handlers.add(m.TOOL_PROGRESS, self.progress)
        handlers.add(m.RUNNER_ADD, self.add)
        handlers.add(m.RUNNER_LIST, self.list)
        handlers.add(m.RUNNER_REVOKE, self.revoke)
        handlers.add(m.TOOL_CALL, self.call)
        self.server.add_route("POST", "/enroll", self.enroll_http)

    def _ledger(self) -> Ledger:
        assert self.ledger is not None
        return self.ledger

    # ---- enrolment -----------------------------------------------------------------

    async def enroll_http(self, request: web.Request) -> web.Response:
        """``POST /enroll {code}``: trade a one-time code for a credential and the pinned key.

        Rate-limited per source address and in total (429 with ``Retry-After``) before
        anything is read; the body must arrive within ``limits.header_timeout``."""
        limits = self.config.limits
        refused = self.enroll_limiter.take(request.remote or "?")
        if refused is not None:
            scope, delay = refused
            self.metrics.rate_limited.labels("enroll", scope).inc()
            retry = max(1, math.ceil(delay))
            why = "from this address" if scope == "source" else "right now"
            return web.json_response(
                {
                    "error": {
                        "code": "rate_limited",
                        "message": f"too many enrolment attempts {why}; retry in {retry} s",
                    }
                },
                status=429,
                headers={"Retry-After": str(retry)},
            )
        if (request.content_length or 0) > _ENROL_MAX_BYTES:
            return _error(
                413, "too_large", f"an enrolment request is under {_ENROL_MAX_BYTES} bytes"
            )
        try:
            async with asyncio.timeout(limits.header_timeout):
                raw = await request.content.read(_ENROL_MAX_BYTES + 1)
        except TimeoutError:
            self.metrics.shed.labels("body_timeout").inc()
            return _error(408, "timeout", "the enrolment request body did not arrive in time")
        if len(raw) > _ENROL_MAX_BYTES:
            return _error(
                413, "too_large", f"an enrolment request is under {_ENROL_MAX_BYTES} bytes"
            )
        try:
            body = msgspec.json.decode(raw, type=EnrolRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, "invalid_params", f"bad enrolment request: {exc}")
        secret, secret_hash = new_secret()
        record = await self._ledger().runners.enroll(
            hash_secret(normalize_code(body.code)), secret_hash
        )
        if record is None:
            log.warning("! enrolment refused", extra={"remote": request.remote})
            return _error(401, "unauthorized", "enrolment code unknown, already used or expired")
        log.info("runner enrolled", extra={"runner_id": record.id, "runner": record.name})
        enrolled = Enrolled(
            runner_id=record.id,
            name=record.name,
            credential=runner_credential(record.id, secret),
            gateway_public_key=self.public_key,
        )
        return web.Response(body=msgspec.json.encode(enrolled), content_type="application/json")

    async def add(self, peer: Peer, p: RunnerAddParams) -> RunnerAdded:
        code = new_enrolment_code()
        expires = time.time() + p.code_ttl
        record = await self._ledger().runners.add(
            p.name, code_hash=hash_secret(normalize_code(code)), expires_at=expires, rotate=p.rotate
        )
        self.registry.disconnect(record.id, "runner rotated")
        url = self.config.gateway.public_url or self.server.url
        return RunnerAdded(
            runner_id=record.id,
            name=record.name,
            code=code,
            expires_at=expires,
            command=f"tether runner enroll --gateway {url} --code {code}",
        )

    async def revoke(self, peer: Peer, p: RunnerRevokeParams) -> RunnerInfo:
        record = await self._ledger().runners.revoke(p.name)
        if self.registry.disconnect(record.id, "runner revoked"):
            log.info("disconnected a revoked runner", extra={"runner": record.name})
        return self._info(record)

    async def list(self, peer: Peer, p: Empty) -> RunnerList:
        records = await self._ledger().runners.list()
        return RunnerList(runners=[self._info(r) for r in records])

    def _info(self, record: RunnerRecord) -> RunnerInfo:
        live = self.registry.get(record.id)
        offered = record.offered()
        return RunnerInfo(
            id=record.id,
            name=record.name,
            status=record.status,  # type: ignore[arg-type]
            online=live is not None,
            version=record.version,
            workspaces=live.workspaces if live else list(offered.get("workspaces", [])),
            tools=sorted(live.tools) if live else list(offered.get("tools", [])),
            agents=live.agents if live else list(offered.get("agents", [])),
            sandbox=live.sandbox if live else str(offered.get("sandbox", "")),
            max_concurrency=live.max_concurrency
            if live
            else int(offered.get("max_concurrency", 0)),
            inflight=self.tools.inflight[record.id] if self.tools else 0,
            created_at=record.created_at,
            enrolled_at=record.enrolled_at,
            last_seen_at=live.last_seen if live else record.last_seen_at,
        )

    # ---- runner connections --------------------------------------------------------

    async def register(self, peer: Peer, p: RunnerRegisterParams) -> RunnerRegistered:
        if peer.runner_id is None:
            raise Forbidden("only runner credentials may register runners")
        record = await self._ledger().runners.get(peer.runner_id)
        if record.status != "enrolled":
            raise Unauthorized(f"runner {record.name} is {record.status}")
        live = self.registry.attach(peer, record.name, p, self.config.limits.max_runner_inflight)
        info = {
            "tools": sorted(live.tools),
            "workspaces": live.workspaces,
            "agents": live.agents,
            "sandbox": live.sandbox,
            "max_concurrency": live.max_concurrency,
        }
        await self._ledger().runners.seen(
            record.id, version=redact(p.version), info=redact_value(info)
        )
        log.info(
            "runner registered",
            extra={
                "runner": record.name,
                "tools": len(live.tools),
                "workspaces": ",".join(live.workspaces),
            },
        )
        return RunnerRegistered(
            runner_id=live.runner_id,
            name=record.name,
            heartbeat_interval=self.config.limits.idle_timeout / 4,
        )

    def heartbeat(self, peer: Peer, p: HeartbeatParams) -> Empty:
        """Kept in memory (cheap at 10k runners); the ledger learns ``last_seen`` when the
        runner registers and when it disconnects."""
        live = self.registry.get(peer.runner_id or "")
        if live is None or live.peer is not peer:
            raise RunnerOffline("register before sending heartbeats")
        live.last_seen = time.time()
        return Empty()

    def progress(self, peer: Peer, p: ToolProgressNote) -> None:
        assert self.tools is not None
        self.tools.progress(peer.runner_id, p.call_id, p.stream, p.text)

    def peer_closed(self, peer: Peer) -> None:
        live = self.registry.get(peer.runner_id or "")
        if live is None or live.peer is not peer or self.ledger is None:
            return
        self.registry.detach(peer)
        task = asyncio.get_running_loop().create_task(
            self._record_seen(live.runner_id, live.last_seen), name=f"runner:{live.name}:seen"
        )
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _record_seen(self, runner_id: str, when: float) -> None:
        try:
            await self._ledger().runners.seen(runner_id, now=when)
        except TetherError as exc:
            log.warning(
                "! could not record when a runner was last seen", extra={"error": exc.message}
            )

    # ---- diagnostics ---------------------------------------------------------------

    async def call(self, peer: Peer, p: ToolCallParams) -> ToolCallResult:
        assert self.tools is not None
        live, workspace = await self.tools.target(p.runner, p.workspace)
        outcome = await self.tools.execute(
            runner_id=live.runner_id,
            tool=p.tool,
            args=p.args,
            workspace=workspace,
            timeout=p.timeout or self.config.runner.default_timeout,
            requested_by=peer.principal.id,
        )
        return ToolCallResult(
            call_id=outcome.call_id,
            runner_id=live.runner_id,
            result=outcome.result,
            duration=outcome.duration,
        )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
