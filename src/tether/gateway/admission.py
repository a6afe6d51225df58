"""Admission of TCP connections to the HTTP listener: what a slowloris cannot take.

aiohttp has no deadline for a request's headers, so a peer that opens connections and
never finishes a request would hold a file descriptor each until the gateway runs out.
:class:`Admission` wraps aiohttp's protocol factory (its public ``AppRunner.server``) and
accounts for every connection:

- a connection is *pending* from when it opens until its request's headers are complete
  (an aiohttp middleware says so), and again between keep-alive requests;
- a pending connection is closed after ``header_timeout`` seconds;
- at most ``max_pending`` are pending: a new connection then closes the *oldest* pending
  one, so clients that finish their headers promptly (``/healthz``, a WebSocket upgrade)
  keep getting in while a flood of half-open requests churns through the pending slots;
- at most ``max_connections`` are open in all (at the cap the oldest pending is shed to
  make room, or the new connection is refused when none is pending).

Every connection shed is counted (``tether_http_connections_shed_total{reason}``) and
summarised in the log at most once per :data:`LOG_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tether.gateway.metrics import GatewayMetrics

__all__ = ["LOG_EVERY", "Admission"]

log = logging.getLogger(__name__)

LOG_EVERY = 10.0
"""Seconds between two log lines about shed connections."""


class _Guarded(asyncio.Protocol):
    """Forwards to aiohttp's protocol; tells :class:`Admission` when it opens and closes."""

    def __init__(self, admission: Admission, inner: asyncio.Protocol) -> None:
        self.admission = admission
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.admission.opened(self):
            self.made = True
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.made:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.made else None

    def pause_writing(self) -> None:
        if self.made:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.made:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admission.closed(self)
        if self.made:
            self.inner.connection_lost(exc)

    def shed(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # frees the descriptor now; nothing is owed to this peer


class Admission:
    """See the module docstring."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_pending: int,
        header_timeout: float,
        metrics: GatewayMetrics,
    ) -> None:
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.header_timeout = header_timeout
        self.metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._open: dict[Any, _Guarded] = {}
        """Transport -> its guard, for every open connection."""
        self._pending: collections.OrderedDict[_Guarded, float] = collections.OrderedDict()
        """Pending connections, oldest first, with their deadlines."""
        self._timer: asyncio.TimerHandle | None = None
        self._shed_counts: collections.Counter[str] = collections.Counter()
        self._logged_at = -LOG_EVERY

    # ---- wiring --------------------------------------------------------------------

    def protocol_factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` around aiohttp's ``runner.server``."""
        return lambda: _Guarded(self, inner())

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Marks the connection busy while a request (or a WebSocket) is being served."""
        guard = self._open.get(request.transport)
        if guard is not None:
            self._busy(guard)
        try:
            return await handler(request)
        finally:
            transport = guard.transport if guard is not None else None
            if guard is not None and transport is not None and not transport.is_closing():
                self._wait_for_request(guard)

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ---- accounting ----------------------------------------------------------------

    def opened(self, guard: _Guarded) -> bool:
        """A connection arrived: admit it as pending (shedding others), or refuse it."""
        while len(self._open) >= self.max_connections and self._pending:
            self._shed(next(iter(self._pending)), "connection_limit")
        if len(self._open) >= self.max_connections:
            self._count("connection_limit")
            guard.shed()
            return False
        while len(self._pending) >= self.max_pending:
            self._shed(next(iter(self._pending)), "pending_limit")
        self._open[guard.transport] = guard
        self.metrics.tcp_connections.set(len(self._open))
        self._wait_for_request(guard)
        return True

    def closed(self, guard: _Guarded) -> None:
        if self._open.pop(guard.transport, None) is not None:
            self.metrics.tcp_connections.set(len(self._open))
        if self._pending.pop(guard, None) is not None:
            self.metrics.pending.set(len(self._pending))

    def _wait_for_request(self, guard: _Guarded) -> None:
        deadline = self._loop.time() + self.header_timeout
        self._pending[guard] = deadline
        self._pending.move_to_end(guard)
        self.metrics.pending.set(len(self._pending))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def _busy(self, guard: _Guarded) -> None:
        if self._pending.pop(guard, None) is not None:
            self.metrics.pending.set(len(self._pending))

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._pending:
            guard, deadline = next(iter(self._pending.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            self._shed(guard, "header_timeout")

    def _shed(self, guard: _Guarded, reason: str) -> None:
        self._pending.pop(guard, None)
        self.metrics.pending.set(len(self._pending))
        self._count(reason)
        guard.shed()

    def _count(self, reason: str) -> None:
        self.metrics.shed.labels(reason).inc()
        self._shed_counts[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            counts = dict(self._shed_counts)
            self._shed_counts.clear()
            log.warning(
                "! shedding TCP connections that did not complete a request",
                extra={
                    **{f"shed_{k}": v for k, v in sorted(counts.items())},
                    "open": len(self._open),
                    "pending": len(self._pending),
                    "max_pending": self.max_pending,
                    "header_timeout": self.header_timeout,
                },
            )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
