"""Following a run's events across reconnects: the client side of ``run.subscribe``.

:func:`follow` yields each event of a run exactly once, in order: it subscribes after
the last seq it has yielded, resubscribes when the gateway says ``run.resync`` (the
subscriber fell behind), and reconnects with capped, jittered backoff when the
connection drops. It ends after the run's terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tether.errors import ConnectionClosed, RequestTimeout
from tether.protocol.methods import RUN_EVENT, RUN_RESYNC, RUN_SUBSCRIBE, Method
from tether.protocol.runs import TERMINAL_EVENTS, EventInfo, RunEventNote, RunSubscribeParams
from tether.transport.client import RpcClient
from tether.transport.connection import Connection, Handler, Router

__all__ = ["CLOSED", "Connector", "NoteInbox", "follow"]

log = logging.getLogger(__name__)

Connector = Callable[[Router], Awaitable[RpcClient]]
"""Opens a new connection whose incoming notifications go to the given router."""

CLOSED = object()
"""What :class:`NoteInbox` queues when its connection closes."""


class NoteInbox:
    """A connection's router that queues ``run.event`` and ``run.resync`` notifications,
    and :data:`CLOSED` when the connection ends (set :meth:`closed` as its ``on_close``)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def route(self, method: Method[Any, Any]) -> Handler | None:
        if method is RUN_EVENT or method is RUN_RESYNC:
            return self.queue.put_nowait
        return None

    def closed(self, _conn: Connection) -> None:
        self.queue.put_nowait(CLOSED)


async def follow(
    connect: Connector,
    run_id: str,
    *,
    after_seq: int = 0,
    max_backoff: float = 10.0,
    on_reconnect: Callable[[int, BaseException], None] | None = None,
) -> AsyncIterator[EventInfo]:
    """Yield the events of ``run_id`` after ``after_seq`` until the run ends."""
    attempt = 0
    while True:
        inbox = NoteInbox()
        try:
            client = await connect(inbox)
        except (ConnectionClosed, RequestTimeout, OSError) as exc:
            attempt += 1
            if on_reconnect is not None:
                on_reconnect(attempt, exc)
            await asyncio.sleep(random.uniform(0, min(max_backoff, 0.2 * 2**attempt)))  # noqa: S311
            continue
        client.conn.on_close = inbox.closed
        try:
            sub = await client.call(
                RUN_SUBSCRIBE, RunSubscribeParams(run_id=run_id, after_seq=after_seq)
            )
            attempt = 0
            while True:
                item = await inbox.queue.get()
                if item is CLOSED:
                    raise ConnectionClosed("connection to the gateway lost")
                if item.subscription != sub.subscription:
                    continue  # a notification of an earlier subscription
                if isinstance(item, RunEventNote):
                    event: EventInfo = item.event
                    if event.run_id != run_id or event.seq <= after_seq:
                        continue
                    after_seq = event.seq
                    yield event
                    if event.kind in TERMINAL_EVENTS:
                        return
                else:
                    log.info(
                        "resubscribing after resync",
                        extra={"run_id": run_id, "after_seq": after_seq},
                    )
                    break
        except (ConnectionClosed, RequestTimeout, OSError) as exc:
            attempt += 1
            if on_reconnect is not None:
                on_reconnect(attempt, exc)
            await asyncio.sleep(random.uniform(0, min(max_backoff, 0.2 * 2**attempt)))  # noqa: S311
        finally:
            await client.aclose()
