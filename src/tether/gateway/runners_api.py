"""Handlers for runners: enrolment (HTTP), registration, heartbeats, admin and tool calls."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from tether.errors import (
    Conflict,
    Forbidden,
    InvalidParams,
    NotFound,
    RateLimited,
    RequestTimeout,
    RunnerOffline,
    TetherError,
    TooLarge,
    Unauthorized,
)
from tether.gateway.call_gate import CallGate
from tether.gateway.handlers import MethodHandlers
from tether.gateway.http_errors import error_response
from tether.gateway.metrics import GatewayMetrics
from tether.gateway.peer import Peer
from tether.gateway.rate_limit import KeyedLimiter
from tether.gateway.registry import RunnerRegistry
from tether.gateway.runner_link import SocketRunnerLink
from tether.gateway.tools import ToolGateway, Transfer
from tether.ledger import Ledger
from tether.ledger.runners import RunnerRecord
from tether.protocol import methods as m
from tether.protocol.runners import (
    Enrolled,
    EnrolRequest,
    FileChunk,
    FilePullParams,
    FilePushParams,
    HeartbeatAck,
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
    ToolList,
    ToolListParams,
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
from tether.types import new_id

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
        *,
        server: GatewayServer,
        registry: RunnerRegistry,
        link: SocketRunnerLink,
        tools: ToolGateway,
        gate: CallGate,
        ledger: Ledger,
        public_key: str,
        metrics: GatewayMetrics,
    ) -> None:
        self.config = config
        self.gate = gate
        self.server = server
        self.registry = registry
        self.link = link
        self.tools = tools
        self.ledger = ledger
        self.public_key = public_key
        self.metrics = metrics
        limits = config.limits
        self.enroll_limiter = KeyedLimiter(
            rate=limits.enroll_rate,
            burst=limits.enroll_burst,
            total_rate=limits.enroll_total_rate,
            total_burst=limits.enroll_total_burst,
        )
        self._side: set[asyncio.Task[None]] = set()

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.RUNNER_REGISTER, self.register)
        handlers.add(m.RUNNER_HEARTBEAT, self.heartbeat)
        handlers.add(m.TOOL_PROGRESS, self.progress)
        handlers.add(m.FILE_PULL, self.pull)
        handlers.add(m.FILE_PUSH, self.push)
        handlers.add(m.RUNNER_ADD, self.add)
        handlers.add(m.RUNNER_LIST, self.list)
        handlers.add(m.RUNNER_REVOKE, self.revoke)
        handlers.add(m.TOOL_CALL, self.call)
        handlers.add(m.TOOL_LIST, self.list_tools)
        self.server.add_route("POST", "/enroll", self.enroll_http)

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
            return error_response(
                RateLimited(f"too many enrolment attempts {why}; retry in {retry} s"),
                headers={"Retry-After": str(retry)},
            )
        if (request.content_length or 0) > _ENROL_MAX_BYTES:
            return error_response(
                TooLarge(f"an enrolment request is under {_ENROL_MAX_BYTES} bytes")
            )
        try:
            async with asyncio.timeout(limits.header_timeout):
                raw = await request.content.read(_ENROL_MAX_BYTES + 1)
        except TimeoutError:
            self.metrics.shed.labels("body_timeout").inc()
            return error_response(
                RequestTimeout("the enrolment request body did not arrive in time")
            )
        if len(raw) > _ENROL_MAX_BYTES:
            return error_response(
                TooLarge(f"an enrolment request is under {_ENROL_MAX_BYTES} bytes")
            )
        try:
            body = msgspec.json.decode(raw, type=EnrolRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return error_response(InvalidParams(f"bad enrolment request: {exc}"))
        secret, secret_hash = new_secret()
        record = await self.ledger.runners.enroll(
            hash_secret(normalize_code(body.code)), secret_hash
        )
        if record is None:
            log.warning("! enrolment refused", extra={"remote": request.remote})
            return error_response(Unauthorized("enrolment code unknown, already used or expired"))
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
        record = await self.ledger.runners.add(
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
        record = await self.ledger.runners.revoke(p.name)
        if self.registry.disconnect(record.id, "runner revoked"):
            log.info("disconnected a revoked runner", extra={"runner": record.name})
        return self._info(record)

    async def list(self, peer: Peer, p: Empty) -> RunnerList:
        records = await self.ledger.runners.list()
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
            inflight=self.tools.inflight[record.id],
            created_at=record.created_at,
            enrolled_at=record.enrolled_at,
            last_seen_at=live.last_seen if live else record.last_seen_at,
        )

    # ---- runner connections --------------------------------------------------------

    async def register(self, peer: Peer, p: RunnerRegisterParams) -> RunnerRegistered:
        if peer.runner_id is None:
            raise Forbidden("only runner credentials may register runners")
        record = await self.ledger.runners.get(peer.runner_id)
        if record.status != "enrolled":
            raise Unauthorized(f"runner {record.name} is {record.status}")
        await self._refuse_a_second_process(record.name, peer, p.boot_id)
        live = self.registry.attach(peer, record.name, p, self.config.limits.max_runner_inflight)
        self.link.registered(live)
        info = {
            "tools": sorted(live.tools),
            "tool_risks": {name: t.risk for name, t in sorted(live.tools.items())},
            "workspaces": live.workspaces,
            "agents": live.agents,
            "sandbox": live.sandbox,
            "max_concurrency": live.max_concurrency,
        }
        await self.ledger.runners.seen(
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
            acked=self.link.acked(live.runner_id, live.boot_id),
        )

    async def _refuse_a_second_process(self, name: str, peer: Peer, boot_id: str) -> None:
        """Another live process holding this runner's identity keeps it: the newcomer is
        refused (``conflict``, reason ``duplicate_runner``) instead of both taking turns.
        A connection that does not answer a probe is taken to be dead and replaced."""
        old = self.registry.get(peer.runner_id or "")
        if old is None or old.peer is peer or old.boot_id == boot_id or old.peer.conn.is_closing:
            return
        try:
            await self.link.call(
                old.runner_id,
                m.RUNNER_PROBE,
                Empty(),
                deadline=time.monotonic() + self.config.limits.runner_grace,
            )
        except TetherError:
            log.info("replacing a runner connection that did not answer", extra={"runner": name})
            return
        log.warning(
            "! refused a second process with the same runner credential", extra={"runner": name}
        )
        raise Conflict(
            f"runner {name} is already connected from another process (started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(old.connected_at))}); stop that "
            "one first, or enrol this machine as another runner (tether runners add NAME)",
            data={"reason": "duplicate_runner", "runner": name},
        )

    def heartbeat(self, peer: Peer, p: HeartbeatParams) -> HeartbeatAck:
        """Kept in memory (cheap at 10k runners); the ledger learns ``last_seen`` when the
        runner registers and when it disconnects. The answer acknowledges notifications."""
        live = self.registry.get(peer.runner_id or "")
        if live is None or live.peer is not peer:
            raise RunnerOffline("register before sending heartbeats")
        live.last_seen = time.time()
        return HeartbeatAck(acked=self.link.acked(live.runner_id, live.boot_id))

    def progress(self, peer: Peer, p: ToolProgressNote) -> None:
        live = self.registry.get(peer.runner_id or "")
        if live is None or live.peer is not peer:
            return
        if self.link.fresh(live.runner_id, live.boot_id, p.seq):
            self.tools.progress(live.runner_id, p.call_id, p.stream, p.text)

    # ---- file transfers (put_file, get_file) ----------------------------------------

    def _transfer(self, peer: Peer, call_id: str) -> Transfer:
        """The transfer of a call running on this runner; nothing for any other call."""
        live = self.registry.get(peer.runner_id or "")
        active = self.tools.active.get(call_id)
        if (
            live is None
            or live.peer is not peer
            or active is None
            or active.runner_id != live.runner_id
            or active.transfer is None
        ):
            raise NotFound(f"no file transfer for call {call_id}")
        return active.transfer

    def pull(self, peer: Peer, p: FilePullParams) -> FileChunk:
        source = self._transfer(peer, p.call_id).source
        if source is None:
            raise NotFound(f"call {p.call_id} has no file to pull")
        data = source[p.offset : p.offset + p.limit]
        return FileChunk(data=data, eof=p.offset + len(data) >= len(source))

    def push(self, peer: Peer, p: FilePushParams) -> Empty:
        transfer = self._transfer(peer, p.call_id)
        if transfer.source is not None:
            raise NotFound(f"call {p.call_id} takes no file")
        got = transfer.received
        if p.offset < len(got) and got[p.offset : p.offset + len(p.data)] == p.data:
            return Empty()  # sent again after a reconnect
        if p.offset != len(got):
            raise InvalidParams(f"slice at {p.offset}, expected {len(got)}")
        if len(got) + len(p.data) > transfer.limit:
            raise TooLarge(f"the file is over the {transfer.limit}-byte limit")
        got += p.data
        return Empty()

    def peer_closed(self, peer: Peer) -> None:
        live = self.registry.get(peer.runner_id or "")
        if live is None or live.peer is not peer:
            return
        self.registry.detach(peer)
        task = asyncio.get_running_loop().create_task(
            self._record_seen(live.runner_id, live.last_seen), name=f"runner:{live.name}:seen"
        )
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _record_seen(self, runner_id: str, when: float) -> None:
        try:
            await self.ledger.runners.seen(runner_id, now=when)
        except TetherError as exc:
            log.warning(
                "! could not record when a runner was last seen", extra={"error": exc.message}
            )

    # ---- diagnostics ---------------------------------------------------------------

    async def list_tools(self, peer: Peer, p: ToolListParams) -> ToolList:
        live = await self.tools.live(p.runner)
        return ToolList(runner=live.name, tools=sorted(live.tools.values(), key=lambda t: t.name))

    async def call(self, peer: Peer, p: ToolCallParams) -> ToolCallResult:
        live, workspace = await self.tools.target(p.runner, p.workspace)
        outcome = await self.gate.direct(
            peer.principal,
            live=live,
            tool=p.tool,
            args=p.args,
            workspace=workspace,
            timeout=p.timeout or self.config.runner.default_timeout,
            ask=p.ask,
            call_id=new_id("call"),
        )
        return ToolCallResult(
            call_id=outcome.call_id,
            runner_id=live.runner_id,
            result=outcome.result,
            duration=outcome.duration,
        )
