"""The runner's side of the runner link: what it sends the gateway survives reconnects.

- **Sequenced notifications** (tool output now, a hosted agent's events next):
  :meth:`GatewayLink.send` numbers each one (1, 2, … per runner process), keeps it
  until the gateway acknowledges it (in the answer to ``runner.register`` and to every
  heartbeat), and after a reconnect sends again everything after the last acknowledged
  number, so nothing sent while the connection was dropping is lost. The buffer is
  bounded (``max_items`` and ``max_bytes``); when it overflows the oldest are forgotten
  and counted.
- **Requests that wait for an answer** (:meth:`GatewayLink.request`, params derived from
  :class:`~tether.protocol.runners.RunnerRequest`): sent again with the same
  ``request_key`` after a reconnect until the deadline; the gateway answers a key once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from tether.errors import ConnectionClosed, RequestTimeout
from tether.protocol.methods import Method
from tether.protocol.runners import RunnerRequest
from tether.transport.client import RpcClient

__all__ = ["GatewayLink"]

log = logging.getLogger(__name__)

P = TypeVar("P", bound=msgspec.Struct)
Q = TypeVar("Q", bound=RunnerRequest)
R = TypeVar("R")


class GatewayLink:
    """See the module docstring."""

    def __init__(self, max_items: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        self.client: RpcClient | None = None
        """The registered connection (sequenced notifications go on it)."""
        self.current: RpcClient | None = None
        """The connection as soon as it is open, before registration: the gateway may send
        requests (``agent.start``) the moment it has registered the runner, before the
        runner has read the answer, and what they answer with goes on this one."""
        self.seq = 0
        self.acked = 0
        self.forgotten = 0
        """Notifications dropped from a full buffer before the gateway had them."""
        self._unacked: collections.deque[tuple[int, Method[Any, None], msgspec.Struct, int]] = (
            collections.deque()
        )
        self._connected = asyncio.Event()

    # ---- the connection ------------------------------------------------------------

    def attach(self, client: RpcClient, acked: int) -> None:
        """A registered connection: forget what the gateway has, send it the rest."""
        self.ack(acked)
        self.client = client
        for _seq, method, params, _size in self._unacked:
            client.notify(method, params)
        self._connected.set()

    def opened(self, client: RpcClient) -> None:
        self.current = client

    def detach(self) -> None:
        self.client = None
        self.current = None
        self._connected.clear()

    def ack(self, acked: int) -> None:
        """The gateway has everything up to ``acked``."""
        self.acked = max(self.acked, acked)
        while self._unacked and self._unacked[0][0] <= self.acked:
            self.kept_bytes -= self._unacked.popleft()[3]

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    # ---- sending -------------------------------------------------------------------

    def send(self, method: Method[P, None], make: Callable[[int], P]) -> int:
        """Number a notification (``make(seq)`` builds its params), keep it until acked,
        and send it now if connected. Returns its seq."""
        self.seq += 1
        params = make(self.seq)
        size = len(msgspec.json.encode(params))
        self._unacked.append((self.seq, method, params, size))
        self.kept_bytes += size
        while len(self._unacked) > self.max_items or self.kept_bytes > self.max_bytes:
            self.kept_bytes -= self._unacked.popleft()[3]
            self.forgotten += 1
            if self.forgotten == 1 or self.forgotten % 1000 == 0:
                log.warning(
                    "! notification buffer full while the gateway is away; forgetting the oldest",
                    extra={"forgotten": self.forgotten},
                )
        client = self.client
        if client is not None and not client.closed:
            client.notify(method, params)
        return self.seq

    async def request(self, method: Method[Q, R], params: Q, *, deadline: float) -> R:
        """Ask the gateway and wait for its answer across reconnects, until ``deadline``
        (monotonic); the same ``params.request_key`` is sent each time."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(f"{method.name}: no answer from the gateway in time")
            if self.client is None or self.client.closed:
                try:
                    await asyncio.wait_for(self._connected.wait(), remaining)
                except TimeoutError:
                    continue
            client = self.client
            if client is None:
                continue
            try:
                result: R = await client.call(method, params, timeout=remaining)
            except ConnectionClosed:
                if self.client is client:
                    self.detach()
                continue
            return result
