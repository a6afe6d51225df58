"""The runner link: the one way the gateway reaches a runner, and a runner the gateway.

:class:`RunnerLink` is the port every caller uses (tool calls now, hosted agents next);
a NATS-routed version will replace :class:`SocketRunnerLink` for scale-out without
touching them. Its rules:

- **Gateway -> runner.** :meth:`~RunnerLink.call` sends a request to the connection that
  holds the runner and awaits the answer until ``deadline``; no connection is
  ``runner_offline``. If the connection drops mid-call, a call with a ``call_key`` waits
  up to ``limits.runner_grace`` for the *same runner process* (same boot id) to
  register again and sends the request once more marked ``resend``: the runner attaches
  to the call it already has, or answers with its recorded outcome, so the call runs
  once and its answer arrives once. A call without a key, a runner that does not come
  back, or one that comes back as a new process, is ``runner_offline``.
- **Runner -> gateway requests** (params derived from
  :class:`~tether.protocol.runners.RunnerRequest`): :meth:`~SocketRunnerLink.serve`
  wraps a handler so that a request sent again after a reconnect, with the same
  ``request_key``, attaches to the first one or gets its answer instead of running the
  handler twice.
- **Acknowledgements.** A runner numbers its notifications (``seq``); the link drops
  numbers it already has (:meth:`~SocketRunnerLink.fresh`) and tells the runner, at
  registration and in every heartbeat answer, the last one it has
  (:meth:`~SocketRunnerLink.acked`), and with a ``runner.ack`` notification every
  :data:`ACK_EVERY` of them, so the runner keeps little and, after a reconnect, replays
  exactly what was lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import msgspec

from tether.config import Limits
from tether.errors import ConnectionClosed, InternalError, RunnerOffline
from tether.gateway.peer import Peer
from tether.gateway.registry import LiveRunner, RunnerRegistry
from tether.protocol.methods import RUNNER_ACK, Method
from tether.protocol.runners import AckNote, RunnerRequest

__all__ = ["ANSWER_TTL", "RunnerLink", "SocketRunnerLink"]

log = logging.getLogger(__name__)

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")
Q = TypeVar("Q", bound=RunnerRequest)

ANSWER_TTL = 600.0
"""Seconds a runner request's answer is kept for a re-send."""
_MAX_ANSWERS = 10_000
ACK_EVERY = 64
"""Notifications received between two ``runner.ack`` sent without waiting for a heartbeat."""


class RunnerLink(Protocol):
    """How the gateway reaches runners. See the module docstring."""

    async def call(
        self,
        runner_id: str,
        method: Method[P, R],
        params: P,
        *,
        deadline: float,
        call_key: str | None = None,
    ) -> R:
        """Send ``method`` to the runner and return its answer (``deadline`` is monotonic)."""
        ...

    def notify(self, runner_id: str, method: Method[P, None], params: P) -> bool:
        """Send a notification if the runner is connected; False when it is not."""
        ...


class SocketRunnerLink:
    """The runner link over this gateway's own WebSocket connections."""

    def __init__(self, registry: RunnerRegistry, limits: Limits) -> None:
        self.registry = registry
        self.limits = limits
        self._answers: collections.OrderedDict[tuple[str, str], tuple[float, asyncio.Task[Any]]] = (
            collections.OrderedDict()
        )
        self._seen: dict[tuple[str, str], int] = {}
        """(runner id, boot id) -> the last notification seq received."""
        self._told: dict[tuple[str, str], int] = {}
        """(runner id, boot id) -> the last seq acknowledged to the runner."""

    # ---- gateway -> runner ---------------------------------------------------------

    def _live(self, runner_id: str) -> LiveRunner:
        live = self.registry.get(runner_id)
        if live is None:
            raise RunnerOffline(
                f"runner {runner_id} is not connected", data={"runner_id": runner_id}
            )
        return live

    async def call(
        self,
        runner_id: str,
        method: Method[P, R],
        params: P,
        *,
        deadline: float,
        call_key: str | None = None,
    ) -> R:
        if call_key is not None and "resend" not in type(params).__struct_fields__:
            raise InternalError(f"{method.name} cannot be re-sent: its params have no resend flag")
        live = self._live(runner_id)
        while True:
            remaining = deadline - time.monotonic()
            try:
                result: R = await live.peer.conn.call(method, params, timeout=max(0.1, remaining))
            except ConnectionClosed:
                if call_key is None:
                    raise RunnerOffline(
                        f"runner {live.name} went away during {method.name}",
                        data={"runner_id": runner_id},
                    ) from None
                live = await self._back(live, call_key, deadline)
                params = msgspec.structs.replace(params, resend=True)
                continue
            return result

    async def _back(self, live: LiveRunner, call_key: str, deadline: float) -> LiveRunner:
        """The same runner process on a new connection, within the grace period."""
        grace = min(self.limits.runner_grace, max(0.0, deadline - time.monotonic()))
        back = await self.registry.wait_back(live.runner_id, grace, gone=live.peer)
        data = {"runner_id": live.runner_id, "call_key": call_key}
        if back is None:
            raise RunnerOffline(f"runner {live.name} went away during the call", data=data)
        if back.boot_id != live.boot_id:
            raise RunnerOffline(
                f"runner {live.name} restarted during the call; its outcome is unknown", data=data
            )
        log.info("re-sending a call after the runner reconnected", extra={"call_key": call_key})
        return back

    def notify(self, runner_id: str, method: Method[P, None], params: P) -> bool:
        live = self.registry.get(runner_id)
        if live is None or live.peer.conn.is_closing:
            return False
        live.peer.conn.notify(method, params)
        return True

    # ---- runner -> gateway ---------------------------------------------------------

    def serve(
        self, handler: Callable[[str, Q], Coroutine[Any, Any, R]]
    ) -> Callable[[Peer, Q], Awaitable[R]]:
        """A method handler that answers each ``request_key`` of a runner once."""

        async def handle(peer: Peer, params: Q) -> R:
            live = self.registry.get(peer.runner_id or "")
            if live is None or live.peer is not peer:
                raise RunnerOffline("register before sending requests")
            key = (live.runner_id, params.request_key)
            known = self._answers.get(key)
            task: asyncio.Task[R]
            if known is None:
                task = asyncio.get_running_loop().create_task(
                    handler(live.runner_id, params), name=f"runner:{live.name}:request"
                )
                self._answers[key] = (time.monotonic(), task)
                self._prune()
            else:
                task = known[1]
            result: R = await asyncio.shield(task)
            return result

        return handle

    def _prune(self) -> None:
        """Forget answered requests past their TTL, or the oldest answered ones over the
        cap; requests still being handled are kept (their callers wait on them)."""
        now = time.monotonic()
        over = len(self._answers) - _MAX_ANSWERS
        for key, (at, task) in list(self._answers.items()):
            if not task.done():
                continue
            if now - at >= ANSWER_TTL or over > 0:
                del self._answers[key]
                over -= 1

    # ---- acknowledgements ----------------------------------------------------------

    def fresh(self, runner_id: str, boot_id: str, seq: int) -> bool:
        """True for a notification not seen before (``seq`` 0 is never sequenced)."""
        if seq == 0:
            return True
        key = (runner_id, boot_id)
        if seq <= self._seen.get(key, 0):
            return False
        self._seen[key] = seq
        if seq - self._told.get(key, 0) >= ACK_EVERY:
            self._told[key] = seq
            self.notify(runner_id, RUNNER_ACK, AckNote(acked=seq))
        return True

    def acked(self, runner_id: str, boot_id: str) -> int:
        acked = self._seen.get((runner_id, boot_id), 0)
        self._told[(runner_id, boot_id)] = acked
        return acked

    def registered(self, live: LiveRunner) -> None:
        """A runner registered: forget the sequence numbers of its earlier processes."""
        for table in (self._seen, self._told):
            for key in [k for k in table if k[0] == live.runner_id and k[1] != live.boot_id]:
                del table[key]
