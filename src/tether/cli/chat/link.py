"""``tether chat``'s connection to the gateway: kept open, and following one session.

:class:`ChatLink` reconnects with capped, jittered backoff when the connection drops (a
gateway restart, a network blip), and resubscribes to the session it follows from its
cursor: the last seq seen of each run. So every event reaches :attr:`ChatLink.events`
once, in order per run, across reconnects and ``run.resync``. Calls made while it is
down wait for it, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from tether.errors import ConnectionClosed, RequestTimeout, TetherError
from tether.protocol.methods import RUN_SUBSCRIBE, RUN_UNSUBSCRIBE, Method
from tether.protocol.runs import (
    EventInfo,
    RunEventNote,
    RunResyncNote,
    RunSubscribeParams,
    UnsubscribeParams,
)
from tether.transport.client import RpcClient
from tether.transport.connection import Router
from tether.transport.follow import CLOSED, NoteInbox

__all__ = ["ChatLink", "LinkState"]

log = logging.getLogger(__name__)

R = TypeVar("R")
LinkState = Literal["connecting", "connected", "reconnecting"]
_LOST = (ConnectionClosed, RequestTimeout, OSError)
"""What a dropped connection raises (but see :func:`_refused`)."""


def _refused(exc: BaseException) -> bool:
    """A refusal that is also an ``OSError`` (``Forbidden`` is a ``PermissionError``):
    reconnecting cannot mend it."""
    return isinstance(exc, TetherError) and not isinstance(exc, ConnectionClosed | RequestTimeout)


class ChatLink:
    """See the module docstring. Start :meth:`run` as a task; read :attr:`events`."""

    def __init__(
        self,
        connect: Callable[[Router], Awaitable[RpcClient]],
        *,
        max_backoff: float = 5.0,
        wait_timeout: float = 30.0,
        on_state: Callable[[LinkState, str], None] = lambda state, why: None,
    ) -> None:
        self._connect = connect
        self.max_backoff = max_backoff
        self.wait_timeout = wait_timeout
        self.on_state = on_state
        self.events: asyncio.Queue[EventInfo] = asyncio.Queue()
        self.session_id: str | None = None
        self.since_run: str | None = None
        self.after: dict[str, int] = {}
        """Run id -> the last seq put in :attr:`events`."""
        self._client: RpcClient | None = None
        self._ready = asyncio.Event()
        self._sub: str | None = None
        self.reconnects = 0
        self.principal: str | None = None
        """Who this login is (from ``hello``), once connected."""

    # ---- following a session -------------------------------------------------------

    async def follow(
        self, session_id: str, *, since_run: str | None, after: dict[str, int]
    ) -> None:
        """Follow ``session_id`` from the run ``since_run`` on (each run after its seq in
        ``after``), instead of the session followed until now."""
        if session_id == self.session_id:
            return
        old, self._sub = self._sub, None
        self.session_id, self.since_run, self.after = session_id, since_run, dict(after)
        client = self._client
        if client is None:
            return  # subscribed when the connection is back
        if old is not None:
            with contextlib.suppress(*_LOST):  # it ends with the connection anyway
                await client.call(RUN_UNSUBSCRIBE, UnsubscribeParams(subscription=old))
        try:
            await self._subscribe(client)
        except _LOST as exc:
            if _refused(exc):
                raise  # not the session's follower: the caller says why
            # else the connection is going: it subscribes when it is back

    async def _subscribe(self, client: RpcClient) -> None:
        if self.session_id is None:
            return
        sub = await client.call(
            RUN_SUBSCRIBE,
            RunSubscribeParams(
                session_id=self.session_id, since_run=self.since_run, after=dict(self.after)
            ),
        )
        self._sub = sub.subscription

    def _take(self, note: RunEventNote) -> None:
        event = note.event
        if note.session_id != self.session_id:
            return  # a session followed before
        if event.seq <= self.after.get(event.run_id, 0):
            return  # seen before a reconnect or resync
        self.after[event.run_id] = event.seq
        self.events.put_nowait(event)

    # ---- the connection --------------------------------------------------------------

    async def run(self) -> None:
        """Keep the connection, forever (cancel the task to end it). A refused login
        (``Unauthorized``, ``Forbidden``) is raised: reconnecting cannot mend it."""
        attempt = 0
        while True:
            inbox = NoteInbox()
            self.on_state("connecting" if attempt == 0 else "reconnecting", "")
            try:
                client = await self._connect(inbox)
            except _LOST as exc:
                if _refused(exc):
                    raise
                attempt += 1
                await self._backoff(attempt, exc)
                continue
            client.conn.on_close = inbox.closed
            try:
                if attempt:
                    self.reconnects += 1
                await self._subscribe(client)
                self._client = client
                self.principal = client.hello.principal
                self._ready.set()
                attempt = 0
                self.on_state("connected", "")
                await self._pump(client, inbox)
            except _LOST as exc:
                if _refused(exc):
                    raise
                attempt += 1
                await self._backoff(attempt, exc)
            finally:
                self._ready.clear()
                self._client = None
                self._sub = None
                await client.aclose()

    async def _pump(self, client: RpcClient, inbox: NoteInbox) -> None:
        while True:
            item = await inbox.queue.get()
            if item is CLOSED:
                raise ConnectionClosed("connection to the gateway lost")
            if isinstance(item, RunEventNote):
                self._take(item)
            elif isinstance(item, RunResyncNote) and item.subscription == self._sub:
                log.info("resubscribing after resync", extra={"session_id": item.session_id})
                await self._subscribe(client)

    async def _backoff(self, attempt: int, exc: BaseException) -> None:
        self.on_state("reconnecting", str(exc) or type(exc).__name__)
        await asyncio.sleep(random.uniform(0.05, min(self.max_backoff, 0.2 * 2**attempt)))  # noqa: S311

    # ---- calls -----------------------------------------------------------------------

    async def call(self, method: Method[Any, R], params: Any, *, retry: bool = True) -> R:
        """Call on the live connection, waiting (bounded) for it to come back if it is
        down; ``retry``: once more after a reconnect if it dropped mid-call (for calls
        that are safe twice, like ``chat.send`` with its ``event_id``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        failed: RpcClient | None = None
        while True:
            client = self._client
            if client is None or client is failed:  # down, or not yet seen to be
                if loop.time() >= deadline:
                    raise ConnectionClosed("not connected to the gateway")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), 0.1)
                await asyncio.sleep(0.01)
                continue
            try:
                return await client.call(method, params)
            except (ConnectionClosed, OSError) as exc:
                if _refused(exc) or not retry or failed is not None:
                    raise
                failed = client
