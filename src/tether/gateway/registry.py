"""The runner registry: which runners are connected now, and what they offer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import msgspec

from tether.gateway.peer import Peer
from tether.protocol.runners import RunnerRegisterParams, ToolInfo
from tether.transport.connection import CloseCode

__all__ = ["LiveRunner", "RunnerRegistry"]

log = logging.getLogger(__name__)


@dataclass
class LiveRunner:
    """A registered runner connection."""

    runner_id: str
    name: str
    peer: Peer
    boot_id: str
    version: str
    tools: dict[str, ToolInfo]
    workspaces: list[str]
    agents: list[str]
    sandbox: str
    max_concurrency: int
    last_seen: float = field(default_factory=time.time)
    connected_at: float = field(default_factory=time.time)


class RunnerRegistry:
    """Live runners by id; callers can wait (bounded) for a runner to come back."""

    def __init__(self) -> None:
        self.live: dict[str, LiveRunner] = {}
        self._back: dict[str, asyncio.Event] = {}
        self._by_name: dict[str, LiveRunner] = {}
        self._tools: dict[bytes, ToolInfo] = {}
        self._stale_names = True

    def attach(
        self, peer: Peer, name: str, params: RunnerRegisterParams, max_inflight: int
    ) -> LiveRunner:
        assert peer.runner_id is not None
        old = self.live.get(peer.runner_id)
        if old is not None and old.peer is not peer:
            log.info(
                "runner reconnected; closing its older connection",
                extra={"runner_id": peer.runner_id},
            )
            old.peer.conn.close_soon(CloseCode.POLICY, "replaced by a newer connection")
        live = LiveRunner(
            runner_id=peer.runner_id,
            name=name,
            peer=peer,
            boot_id=params.boot_id,
            version=params.version,
            tools={t.name: self._shared(t) for t in params.tools},
            workspaces=list(params.workspaces),
            agents=list(params.agents),
            sandbox=params.sandbox,
            max_concurrency=min(params.max_concurrency, max_inflight),
        )
        self.live[peer.runner_id] = live
        self._stale_names = True
        event = self._back.pop(peer.runner_id, None)
        if event is not None:
            event.set()
        return live

    def _shared(self, tool: ToolInfo) -> ToolInfo:
        """One copy of each distinct tool description, however many runners offer it
        (their JSON schemas would otherwise cost ~20 KiB per runner)."""
        key = msgspec.json.encode(tool)
        shared = self._tools.get(key)
        if shared is None:
            shared = self._tools[key] = tool
        return shared

    def detach(self, peer: Peer) -> None:
        if peer.runner_id is None:
            return
        live = self.live.get(peer.runner_id)
        if live is not None and live.peer is peer:
            del self.live[peer.runner_id]
            self._stale_names = True

    def get(self, runner_id: str) -> LiveRunner | None:
        return self.live.get(runner_id)

    def find(self, name_or_id: str) -> LiveRunner | None:
        """A connected runner by id or by name."""
        live = self.live.get(name_or_id)
        if live is not None:
            return live
        if self._stale_names:
            self._by_name = {r.name: r for r in self.live.values()}
            self._stale_names = False
        return self._by_name.get(name_or_id)

    async def wait_back(
        self, runner_id: str, timeout: float, *, gone: Peer | None = None
    ) -> LiveRunner | None:
        """A registration of the runner on another connection than ``gone``, waiting up to
        ``timeout`` for the runner to reconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            live = self.live.get(runner_id)
            if live is not None and live.peer is not gone and not live.peer.conn.is_closing:
                return live
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            event = self._back.setdefault(runner_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def disconnect(self, runner_id: str, reason: str) -> bool:
        live = self.live.pop(runner_id, None)
        if live is None:
            return False
        self._stale_names = True
        live.peer.conn.close_soon(CloseCode.POLICY, reason)
        return True
